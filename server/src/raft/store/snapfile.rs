//! Snapshot files: the state machine's snapshots live in `raft.snapshots/` next to the
//! sled database, one file each, streamed to and from disk so a snapshot never has to fit
//! in memory as one buffer (at a hundred thousand allocations the JSON is hundreds of
//! megabytes; held whole, then checksummed into a second copy and handed to sled as a
//! third, it was the largest transient a server had).
//!
//! A file is framed as every other record ([`super::seal`]): the version byte, the CRC-32
//! of the stored payload, the payload: the JSON compressed as one zstd stream (version 2;
//! a C100K state shrinks about 20x, which is disk, fsync and transfer to a follower
//! saved), or as it is (version 1, read only). Its name, length and checksum are also recorded in sled
//! (`snapshot_file`, itself sealed), written only after the file is synced and renamed
//! into place, so a crash leaves either the old snapshot or the new one, never half of
//! one. Files are read back through [`Checked`], which hashes what it reads: a damaged
//! file is refused, never restored.

use super::records::Damage;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The directory of snapshot files inside a data dir.
pub const SNAPSHOT_DIR: &str = "raft.snapshots";

const RECORD_V1: u8 = 1;
const RECORD_V2_ZSTD: u8 = 2;
/// zstd's fastest levels compress this JSON about 20x at hundreds of MB/s.
const ZSTD_LEVEL: i32 = 1;
/// Version byte and CRC-32.
pub const HEADER: u64 = 5;

/// What sled records of the current snapshot file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    /// The file's name inside [`SNAPSHOT_DIR`].
    pub name: String,
    /// Its length, header included.
    pub len: u64,
    /// The CRC-32 of its payload (also in its header).
    pub crc: u32,
}

/// Where snapshot files go for the sled database at `sled_path`: beside it.
pub fn dir_for(sled_path: &Path) -> PathBuf {
    sled_path
        .parent()
        .map(|p| p.join(SNAPSHOT_DIR))
        .unwrap_or_else(|| PathBuf::from(SNAPSHOT_DIR))
}

/// A new file name: the index it ends at and a random part, so a snapshot built here and
/// one received from the leader at the same index never share a name.
pub fn new_name(index: u64, suffix: &str) -> String {
    format!(
        "snapshot-{index:020}-{:016x}.{suffix}",
        rand::random::<u64>()
    )
}

/// A writer that hashes and counts what passes through it.
struct Hashing<W> {
    inner: W,
    crc: crc32fast::Hasher,
    len: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Write a snapshot file: `body` streams the payload into the writer it is given. The file
/// is written under a temporary name, synced, and renamed to `name`; the directory is
/// synced after. Returns its record.
pub fn write(
    dir: &Path,
    name: &str,
    body: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<FileRecord> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!("{name}.tmp"));
    let mut file = File::create(&tmp)?;
    file.write_all(&[0u8; HEADER as usize])?;
    let hashing = Hashing {
        inner: BufWriter::with_capacity(1 << 20, file),
        crc: crc32fast::Hasher::new(),
        len: 0,
    };
    let mut z = BufWriter::with_capacity(1 << 16, zstd::Encoder::new(hashing, ZSTD_LEVEL)?);
    body(&mut z)?;
    let w = z.into_inner().map_err(|e| e.into_error())?.finish()?;
    let (crc, len) = (w.crc.finalize(), w.len);
    let mut file = w.inner.into_inner().map_err(|e| e.into_error())?;
    file.seek(SeekFrom::Start(0))?;
    file.write_all(&header(crc))?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)?;
    Ok(FileRecord {
        name: name.to_string(),
        len: len + HEADER,
        crc,
    })
}

fn header(crc: u32) -> [u8; HEADER as usize] {
    let mut h = [RECORD_V2_ZSTD, 0, 0, 0, 0];
    h[1..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Make a rename or removal in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A reader over a snapshot file's payload that hashes what it reads; [`Checked::finish`]
/// reads what is left and compares the checksum with the header's. Unbuffered: put a
/// `BufReader` over it, so the hashing sees large reads.
pub struct Checked {
    inner: File,
    compressed: bool,
    want: u32,
    crc: crc32fast::Hasher,
    what: String,
}

impl Checked {
    /// Open `path`, checking its header (and, when `record` is given, that its length
    /// and checksum are the ones sled recorded).
    pub fn open(path: &Path, record: Option<&FileRecord>) -> Result<Checked, Damage> {
        let what = format!("snapshot file {}", path.display());
        let mut f = File::open(path).map_err(|e| Damage(format!("{what} cannot be read: {e}")))?;
        let len = f
            .metadata()
            .map_err(|e| Damage(format!("{what} cannot be read: {e}")))?
            .len();
        let mut h = [0u8; HEADER as usize];
        if len < HEADER
            || f.read_exact(&mut h).is_err()
            || !matches!(h[0], RECORD_V1 | RECORD_V2_ZSTD)
        {
            return Err(Damage(format!(
                "{what} has no valid checksum header ({len} bytes)"
            )));
        }
        let want = u32::from_le_bytes(h[1..].try_into().expect("4 bytes"));
        if let Some(r) = record {
            if r.len != len || r.crc != want {
                return Err(Damage(format!(
                    "{what} is not the snapshot recorded: {len} bytes with checksum {want:08x}, recorded {} bytes with {:08x}",
                    r.len, r.crc
                )));
            }
        }
        Ok(Checked {
            inner: f,
            compressed: h[0] == RECORD_V2_ZSTD,
            want,
            crc: crc32fast::Hasher::new(),
            what,
        })
    }

    /// Read to the end and check the checksum of everything read.
    pub fn finish(mut self) -> Result<(), Damage> {
        io::copy(
            &mut io::BufReader::with_capacity(1 << 20, &mut self),
            &mut io::sink(),
        )
        .map_err(|e| Damage(format!("{} cannot be read: {e}", self.what)))?;
        let got = self.crc.clone().finalize();
        if got != self.want {
            return Err(Damage(format!(
                "{} fails its checksum (stored {:08x}, computed {got:08x})",
                self.what, self.want
            )));
        }
        Ok(())
    }
}

impl Read for Checked {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.crc.update(&buf[..n]);
        Ok(n)
    }
}

/// Parse the JSON in the file at `path` (checked against `record`), decompressing it
/// as it is read, and check the checksum of every stored byte.
pub fn read_json<T: serde::de::DeserializeOwned>(
    path: &Path,
    record: Option<&FileRecord>,
) -> Result<T, Damage> {
    let mut file = Checked::open(path, record)?;
    let what = file.what.clone();
    let bad = |e: &dyn std::fmt::Display| Damage(format!("{what} does not parse: {e}"));
    let parsed = if file.compressed {
        let z = zstd::Decoder::new(&mut file).map_err(|e| bad(&e))?;
        serde_json::from_reader(io::BufReader::with_capacity(1 << 20, z))
    } else {
        serde_json::from_reader(io::BufReader::with_capacity(1 << 20, &mut file))
    };
    // A damaged file fails its checksum, whatever the parser made of it.
    match parsed {
        Ok(v) => file.finish().map(|_| v),
        Err(e) => {
            file.finish()?;
            Err(bad(&e))
        }
    }
}

/// Check a whole file against its header (and record).
pub fn verify(path: &Path, record: Option<&FileRecord>) -> Result<FileRecord, Damage> {
    let c = Checked::open(path, record)?;
    let want = c.want;
    c.finish()?;
    let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or_default();
    Ok(FileRecord {
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        len,
        crc: want,
    })
}

/// Remove the files in `dir` other than `keep`: with `only_finished`, only finished
/// snapshots (older ones, superseded); otherwise also temporary files left by a crash or
/// by a transfer that was abandoned (at startup, when nothing is being written).
pub fn remove_except(dir: &Path, keep: &str, only_finished: bool) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name();
        let finished = name.to_string_lossy().ends_with(".json");
        if name != keep && (finished || !only_finished) {
            let p = e.path();
            if let Err(err) = std::fs::remove_file(&p) {
                tracing::warn!(path = %p.display(), %err, "could not remove an old snapshot file");
            }
        }
    }
    let _ = sync_dir(dir);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_file_reads_back_and_any_flipped_byte_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let json = serde_json::to_vec(&vec!["one allocation, much like the next"; 1000]).unwrap();
        let rec = write(dir.path(), "s", |w| w.write_all(&json)).unwrap();
        let path = dir.path().join("s");
        assert!(
            rec.len * 20 < json.len() as u64,
            "stored compressed: {}",
            rec.len
        );
        assert_eq!(verify(&path, Some(&rec)).unwrap(), rec);
        let back: Vec<String> = read_json(&path, Some(&rec)).unwrap();
        assert_eq!(serde_json::to_vec(&back).unwrap(), json);
        let good = std::fs::read(&path).unwrap();
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x40;
            std::fs::write(&path, &bad).unwrap();
            assert!(verify(&path, Some(&rec)).is_err(), "flip at byte {i}");
            assert!(verify(&path, None).is_err(), "flip at byte {i}, no record");
            assert!(
                read_json::<serde_json::Value>(&path, None).is_err(),
                "flip at {i}"
            );
        }
        std::fs::write(&path, &good[..good.len() - 1]).unwrap();
        assert!(verify(&path, Some(&rec)).is_err(), "a truncated file");
        assert!(verify(&path, None).is_err(), "a truncated file, no record");
        assert!(!dir.path().join("s.tmp").exists());
    }

    #[test]
    fn a_cleanup_keeps_the_current_snapshot_and_files_in_progress_unless_told() {
        let dir = tempfile::tempdir().unwrap();
        let names = ["a.json", "b.json", "c.json.tmp", "d.recv"];
        for n in names {
            std::fs::write(dir.path().join(n), b"x").unwrap();
        }
        let left = || {
            let mut l: Vec<_> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            l.sort();
            l
        };
        remove_except(dir.path(), "b.json", true);
        assert_eq!(left(), ["b.json", "c.json.tmp", "d.recv"]);
        remove_except(dir.path(), "b.json", false);
        assert_eq!(left(), ["b.json"]);
    }
}
