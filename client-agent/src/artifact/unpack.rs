//! Unpacking an archive beneath one directory descriptor, never following a link and
//! refusing every entry that would land outside it.

use super::*;

/// Unpacks an archive read from `file` into `dest`.
pub fn unpack(
    kind: ArchiveKind,
    file: File,
    dest: BorrowedFd<'_>,
    limits: &Limits,
) -> Result<(), String> {
    let mut u = Unpacker::new(dest, limits);
    let buffered = io::BufReader::new(file);
    match kind {
        ArchiveKind::Tar => u.tar(buffered),
        ArchiveKind::TarGz => u.tar(flate2::read::MultiGzDecoder::new(buffered)),
        ArchiveKind::TarBz2 => u.tar(bzip2::read::MultiBzDecoder::new(buffered)),
        ArchiveKind::TarXz => u.tar(xz2::read::XzDecoder::new_multi_decoder(buffered)),
        ArchiveKind::Zip => u.zip(buffered.into_inner()),
    }
}

/// What an archive entry is.
enum EntryKind<'a> {
    Dir,
    File,
    Symlink(&'a str),
    HardLink(&'a str),
}

/// Writes archive entries below one directory descriptor.
struct Unpacker<'a> {
    dest: BorrowedFd<'a>,
    limits: Limits,
    entries: u64,
    bytes: u64,
}

pub(super) fn sys(what: &str, e: Errno) -> String {
    format!("{what}: {}", io::Error::from_raw_os_error(e.raw_os_error()))
}

/// Whether symlink `target`, placed in directory `parent` (relative to the destination),
/// stays inside the destination (lexically; the unpacker itself never follows links).
fn link_stays_inside(parent: &Path, target: &str) -> bool {
    if target.is_empty() || target.starts_with('/') || target.contains('\0') {
        return false;
    }
    let mut depth = parent.components().count() as i64;
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            _ => depth += 1,
        }
    }
    true
}

impl<'a> Unpacker<'a> {
    fn new(dest: BorrowedFd<'a>, limits: &Limits) -> Self {
        Unpacker {
            dest,
            limits: *limits,
            entries: 0,
            bytes: 0,
        }
    }

    fn tar(&mut self, r: impl Read) -> Result<(), String> {
        let mut ar = tar::Archive::new(r);
        let entries = ar
            .entries()
            .map_err(|e| format!("reading the archive: {e}"))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| format!("reading the archive: {e}"))?;
            let path = entry.path_bytes().into_owned();
            let name = String::from_utf8(path)
                .map_err(|_| "archive entry has a name that is not UTF-8; refused".to_string())?;
            let mode = entry.header().mode().unwrap_or(0o644);
            let et = entry.header().entry_type();
            let link = entry
                .link_name_bytes()
                .map(|l| String::from_utf8_lossy(&l).into_owned());
            use tar::EntryType as T;
            let kind = match et {
                T::Directory => EntryKind::Dir,
                T::Regular | T::Continuous | T::GNUSparse => EntryKind::File,
                T::Symlink => EntryKind::Symlink(link.as_deref().unwrap_or("")),
                T::Link => EntryKind::HardLink(link.as_deref().unwrap_or("")),
                T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink => continue,
                T::Char | T::Block => {
                    return Err(format!(
                        "archive entry {name:?} is a device; artifacts may only hold files, \
                         directories and links, so the archive was refused"
                    ))
                }
                T::Fifo => {
                    return Err(format!(
                        "archive entry {name:?} is a FIFO; artifacts may only hold files, \
                         directories and links, so the archive was refused"
                    ))
                }
                other => {
                    return Err(format!(
                        "archive entry {name:?} has an unsupported type ({other:?}); refused"
                    ))
                }
            };
            self.entry(&name, kind, mode, &mut entry)?;
        }
        Ok(())
    }

    fn zip(&mut self, file: File) -> Result<(), String> {
        let mut ar =
            zip::ZipArchive::new(file).map_err(|e| format!("reading the zip archive: {e}"))?;
        if ar.len() as u64 > self.limits.max_entries {
            return Err(self.too_many());
        }
        for i in 0..ar.len() {
            let mut f = ar
                .by_index(i)
                .map_err(|e| format!("reading the zip archive: {e}"))?;
            let name = f.name().to_string();
            let raw_mode = f.unix_mode();
            let mode = raw_mode.unwrap_or(if f.is_dir() { 0o755 } else { 0o644 });
            let fmt = raw_mode.map(|m| m & libc::S_IFMT).unwrap_or(0);
            if f.is_dir() {
                self.entry(&name, EntryKind::Dir, mode, &mut f)?;
            } else if fmt == libc::S_IFLNK {
                let mut target = String::new();
                (&mut f)
                    .take(4096)
                    .read_to_string(&mut target)
                    .map_err(|e| format!("reading the link target of {name:?}: {e}"))?;
                self.entry(&name, EntryKind::Symlink(&target), mode, &mut io::empty())?;
            } else if fmt == 0 || fmt == libc::S_IFREG {
                self.entry(&name, EntryKind::File, mode, &mut f)?;
            } else {
                return Err(format!(
                    "archive entry {name:?} is a device, FIFO or socket; artifacts may only \
                     hold files, directories and links, so the archive was refused"
                ));
            }
        }
        Ok(())
    }

    fn too_many(&self) -> String {
        format!(
            "the archive has more than {} entries (the limit); refused",
            self.limits.max_entries
        )
    }

    /// Removes what is at `name` in `dir` so that a new entry can take its place; a
    /// directory is kept (and is an error for a non-directory entry).
    fn clear(dir: BorrowedFd<'_>, name: &str, shown: &str) -> Result<(), String> {
        match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(sys(&format!("archive entry {shown:?}"), e)),
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => Err(format!(
                "archive entry {shown:?} would replace a directory; refused"
            )),
            Ok(_) => rustix::fs::unlinkat(dir, name, AtFlags::empty())
                .map_err(|e| sys(&format!("replacing {shown:?}"), e)),
        }
    }

    // One function on purpose: every check an entry must pass (count, path, link
    // targets) comes before anything is created for it, and one place keeps that order
    // visible.
    fn entry(
        &mut self,
        name: &str,
        kind: EntryKind<'_>,
        mode: u32,
        data: &mut impl Read,
    ) -> Result<(), String> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(self.too_many());
        }
        let rel = allocdir::relative("archive entry", name)
            .map_err(|e| format!("{e}; the archive was refused"))?;
        // Permission bits only: no setuid, setgid or sticky bit survives.
        let perm = Mode::from_raw_mode(mode & 0o777);
        let link_err = |e: io::Error| {
            if allocdir::is_link_refusal(&e) {
                format!("archive entry {name:?} would be written through a symbolic link; refused")
            } else {
                format!("unpacking {name:?}: {e}")
            }
        };
        let Some(file_name) = rel.file_name().and_then(|n| n.to_str()) else {
            // `./` and the like: the destination itself.
            return match kind {
                EntryKind::Dir => Ok(()),
                _ => Err(format!("archive entry {name:?} has no file name; refused")),
            };
        };
        let parent_rel = rel.parent().unwrap_or(Path::new(""));
        // Judge links before anything is created for them.
        if let EntryKind::Symlink(target) = kind {
            if !link_stays_inside(parent_rel, target) {
                return Err(format!(
                    "archive entry {name:?} is a symbolic link to {target:?}, which leads \
                     outside the artifact's destination; the archive was refused"
                ));
            }
        }
        let hard_target = match kind {
            EntryKind::HardLink(target) => {
                Some(allocdir::relative("hard link target", target).map_err(|e| {
                    format!(
                        "archive entry {name:?} is a hard link that leads outside the \
                         artifact's destination ({e}); the archive was refused"
                    )
                })?)
            }
            _ => None,
        };
        if let EntryKind::Dir = kind {
            let fd = allocdir::mkdir_all(self.dest, &rel, Mode::from_raw_mode(0o755))
                .map_err(link_err)?;
            // Keep the directory writable for the rest of the archive.
            return rustix::fs::fchmod(&fd, perm | Mode::RWXU)
                .map_err(|e| sys(&format!("setting the mode of {name:?}"), e));
        }
        let parent = allocdir::mkdir_all(self.dest, parent_rel, Mode::from_raw_mode(0o755))
            .map_err(link_err)?;
        match kind {
            EntryKind::Dir => unreachable!("handled above"),
            EntryKind::File => {
                Self::clear(parent.as_fd(), file_name, name)?;
                let fd = rustix::fs::openat(
                    &parent,
                    file_name,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(|e| sys(&format!("creating {name:?}"), e))?;
                let mut out = File::from(fd);
                let left = self.limits.max_unpacked_bytes - self.bytes;
                let n = io::copy(&mut data.take(left + 1), &mut out)
                    .map_err(|e| format!("unpacking {name:?}: {e}"))?;
                if n > left {
                    return Err(format!(
                        "the archive unpacks to more than {} bytes (the limit); refused",
                        self.limits.max_unpacked_bytes
                    ));
                }
                self.bytes += n;
                rustix::fs::fchmod(&out, perm)
                    .map_err(|e| sys(&format!("setting the mode of {name:?}"), e))
            }
            EntryKind::Symlink(target) => {
                Self::clear(parent.as_fd(), file_name, name)?;
                rustix::fs::symlinkat(target, &parent, file_name)
                    .map_err(|e| sys(&format!("creating the link {name:?}"), e))
            }
            EntryKind::HardLink(target) => {
                let trel = hard_target.unwrap_or_default();
                let (Some(tname), tparent) =
                    (trel.file_name(), trel.parent().unwrap_or(Path::new("")))
                else {
                    return Err(format!(
                        "archive entry {name:?} is a hard link without a target; refused"
                    ));
                };
                let tdir = allocdir::open_beneath(
                    self.dest,
                    tparent,
                    OFlags::PATH | OFlags::DIRECTORY,
                    Mode::empty(),
                    Links::Never,
                )
                .map_err(link_err)?;
                match rustix::fs::statat(&tdir, tname, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile => {}
                    _ => {
                        return Err(format!(
                            "archive entry {name:?} is a hard link to {target:?}, which is not a \
                             file unpacked before it; refused"
                        ))
                    }
                }
                Self::clear(parent.as_fd(), file_name, name)?;
                rustix::fs::linkat(&tdir, tname, &parent, file_name, AtFlags::empty())
                    .map_err(|e| sys(&format!("creating the hard link {name:?}"), e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlink_targets_are_judged_from_their_directory() {
        assert!(link_stays_inside(Path::new("a/b"), "../c"));
        assert!(link_stays_inside(Path::new("a"), "../c"));
        assert!(!link_stays_inside(Path::new("a"), "../../c"));
        assert!(!link_stays_inside(Path::new(""), ".."));
        assert!(!link_stays_inside(Path::new(""), "/etc"));
        assert!(link_stays_inside(Path::new(""), "./x/../y"));
    }
}
