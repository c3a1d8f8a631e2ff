use super::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;

fn dest_dir() -> (tempfile::TempDir, OwnedFd) {
    let tmp = tempfile::tempdir().unwrap();
    fs::create_dir(tmp.path().join("dest")).unwrap();
    let fd = allocdir::open_dir(&tmp.path().join("dest")).unwrap();
    (tmp, fd)
}

fn small() -> Limits {
    Limits {
        max_download_bytes: 1 << 20,
        max_unpacked_bytes: 1 << 20,
        max_entries: 100,
    }
}

/// Name, type, mode, data and link target of one raw tar entry.
type RawEntry<'a> = (&'a str, tar::EntryType, u32, &'a [u8], Option<&'a str>);

/// A tar whose headers are written raw, so that names `tar::Builder` would refuse
/// (`..`, absolute) can be built.
fn raw_tar(entries: &[RawEntry<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, kind, mode, data, link) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_mode(*mode);
        h.set_size(data.len() as u64);
        {
            let gnu = h.as_gnu_mut().unwrap();
            gnu.name[..name.len()].copy_from_slice(name.as_bytes());
            if let Some(l) = link {
                gnu.linkname[..l.len()].copy_from_slice(l.as_bytes());
            }
        }
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        out.extend(std::iter::repeat_n(0u8, pad));
    }
    out.extend(std::iter::repeat_n(0u8, 1024));
    out
}

fn unpack_bytes(
    kind: ArchiveKind,
    bytes: &[u8],
    dest: &OwnedFd,
    limits: &Limits,
) -> Result<(), String> {
    let mut f = tempfile::tempfile().unwrap();
    f.write_all(bytes).unwrap();
    f.rewind().unwrap();
    unpack(kind, f, dest.as_fd(), limits)
}

use tar::EntryType as T;

#[test]
fn a_plain_archive_unpacks_with_modes_but_without_setuid_bits() {
    let (tmp, dest) = dest_dir();
    let tar = raw_tar(&[
        ("bin/", T::Directory, 0o755, b"", None),
        ("bin/tool", T::Regular, 0o4755, b"#!/bin/sh\n", None),
        ("bin/alias", T::Symlink, 0o777, b"", Some("tool")),
        ("bin/hard", T::Link, 0o644, b"", Some("bin/tool")),
        ("conf/app.txt", T::Regular, 0o2644, b"hello", None),
    ]);
    unpack_bytes(ArchiveKind::Tar, &tar, &dest, &small()).unwrap();
    let d = tmp.path().join("dest");
    let mode = fs::metadata(d.join("bin/tool"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o755, "setuid must be dropped");
    let mode = fs::metadata(d.join("conf/app.txt"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o644, "setgid must be dropped");
    assert_eq!(
        fs::read_link(d.join("bin/alias")).unwrap(),
        Path::new("tool")
    );
    assert_eq!(
        fs::read_to_string(d.join("bin/hard")).unwrap(),
        "#!/bin/sh\n"
    );
}

#[test]
fn every_hostile_tar_entry_kind_is_refused_and_nothing_lands_outside() {
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "dotdot",
            raw_tar(&[("../escaped", T::Regular, 0o644, b"x", None)]),
            "'..'",
        ),
        (
            "absolute",
            raw_tar(&[("/tmp/escaped", T::Regular, 0o644, b"x", None)]),
            "absolute",
        ),
        (
            "symlink to /",
            raw_tar(&[("evil", T::Symlink, 0o777, b"", Some("/"))]),
            "symbolic link",
        ),
        (
            "symlink up",
            raw_tar(&[("a/evil", T::Symlink, 0o777, b"", Some("../../x"))]),
            "symbolic link",
        ),
        (
            "hard link out",
            raw_tar(&[("h", T::Link, 0o644, b"", Some("../../etc/passwd"))]),
            "hard link",
        ),
        (
            "hard link absolute",
            raw_tar(&[("h", T::Link, 0o644, b"", Some("/etc/passwd"))]),
            "hard link",
        ),
        (
            "char device",
            raw_tar(&[("null", T::Char, 0o666, b"", None)]),
            "device",
        ),
        (
            "block device",
            raw_tar(&[("sda", T::Block, 0o666, b"", None)]),
            "device",
        ),
        (
            "fifo",
            raw_tar(&[("pipe", T::Fifo, 0o666, b"", None)]),
            "FIFO",
        ),
    ];
    for (what, tar, needle) in cases {
        let (tmp, dest) = dest_dir();
        let err = unpack_bytes(ArchiveKind::Tar, &tar, &dest, &small()).unwrap_err();
        assert!(err.contains(needle), "{what}: {err}");
        assert!(!tmp.path().join("escaped").exists(), "{what}");
        assert!(
            fs::read_dir(tmp.path().join("dest"))
                .unwrap()
                .next()
                .is_none(),
            "{what}: something was unpacked"
        );
    }
}

#[test]
fn an_archive_cannot_write_through_a_link_it_or_the_task_planted() {
    let (tmp, dest) = dest_dir();
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    // Planted earlier (by the task or a previous archive).
    std::os::unix::fs::symlink(&outside, tmp.path().join("dest/evil")).unwrap();
    let tar = raw_tar(&[("evil/payload", T::Regular, 0o644, b"x", None)]);
    let err = unpack_bytes(ArchiveKind::Tar, &tar, &dest, &small()).unwrap_err();
    assert!(err.contains("symbolic link"), "{err}");
    // A link inside the archive pointing inside, then a file through it: refused too.
    let tar = raw_tar(&[
        ("sub/", T::Directory, 0o755, b"", None),
        ("in", T::Symlink, 0o777, b"", Some("sub")),
        ("in/x", T::Regular, 0o644, b"x", None),
    ]);
    let err = unpack_bytes(ArchiveKind::Tar, &tar, &dest, &small()).unwrap_err();
    assert!(err.contains("symbolic link"), "{err}");
    assert!(fs::read_dir(&outside).unwrap().next().is_none());
    // A file entry named like an existing link replaces the link, not its target.
    let host = tmp.path().join("host-file");
    fs::write(&host, "host").unwrap();
    std::os::unix::fs::symlink(&host, tmp.path().join("dest/f")).unwrap();
    let tar = raw_tar(&[("f", T::Regular, 0o644, b"archive", None)]);
    unpack_bytes(ArchiveKind::Tar, &tar, &dest, &small()).unwrap();
    assert_eq!(fs::read_to_string(&host).unwrap(), "host");
    assert_eq!(
        fs::read_to_string(tmp.path().join("dest/f")).unwrap(),
        "archive"
    );
}

#[test]
fn size_and_entry_caps_stop_an_archive_bomb() {
    let (_tmp, dest) = dest_dir();
    let big = vec![0u8; 4096];
    let tar = raw_tar(&[("big", T::Regular, 0o644, &big, None)]);
    let limits = Limits {
        max_unpacked_bytes: 1000,
        ..small()
    };
    // Gzip-compressed, the way a bomb arrives.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    let err = unpack_bytes(ArchiveKind::TarGz, &gz, &dest, &limits).unwrap_err();
    assert!(err.contains("more than 1000 bytes"), "{err}");
    let many: Vec<String> = (0..20).map(|i| format!("f{i}")).collect();
    let entries: Vec<RawEntry<'_>> = many
        .iter()
        .map(|n| (n.as_str(), T::Regular, 0o644, &b""[..], None))
        .collect();
    let limits = Limits {
        max_entries: 10,
        ..small()
    };
    let err = unpack_bytes(ArchiveKind::Tar, &raw_tar(&entries), &dest, &limits).unwrap_err();
    assert!(err.contains("more than 10 entries"), "{err}");
}

#[test]
fn bzip2_and_xz_tarballs_unpack_and_are_checked_the_same_way() {
    let good = raw_tar(&[("f.txt", T::Regular, 0o6755, b"data", None)]);
    let bad = raw_tar(&[("evil", T::Symlink, 0o777, b"", Some("/"))]);
    fn bz(t: &[u8]) -> Vec<u8> {
        let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        e.write_all(t).unwrap();
        e.finish().unwrap()
    }
    fn xz(t: &[u8]) -> Vec<u8> {
        let mut e = xz2::write::XzEncoder::new(Vec::new(), 1);
        e.write_all(t).unwrap();
        e.finish().unwrap()
    }
    type Encoder = fn(&[u8]) -> Vec<u8>;
    let encoders: [(ArchiveKind, Encoder); 2] =
        [(ArchiveKind::TarBz2, bz), (ArchiveKind::TarXz, xz)];
    for (kind, enc) in encoders {
        let (tmp, dest) = dest_dir();
        unpack_bytes(kind, &enc(&good), &dest, &small()).unwrap();
        let p = tmp.path().join("dest/f.txt");
        assert_eq!(fs::read_to_string(&p).unwrap(), "data");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o7777,
            0o755
        );
        let err = unpack_bytes(kind, &enc(&bad), &dest, &small()).unwrap_err();
        assert!(err.contains("symbolic link"), "{kind:?}: {err}");
    }
}

fn zip_with(f: impl FnOnce(&mut zip::ZipWriter<io::Cursor<Vec<u8>>>)) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
    f(&mut w);
    w.finish().unwrap().into_inner()
}

#[test]
fn hostile_zip_entries_are_refused_and_setuid_dropped() {
    use zip::write::SimpleFileOptions;
    let opts = SimpleFileOptions::default();
    let ok = zip_with(|w| {
        w.start_file("dir/run.sh", opts.unix_permissions(0o4755))
            .unwrap();
        w.write_all(b"echo").unwrap();
        w.add_symlink("dir/link", "run.sh", opts).unwrap();
    });
    let (tmp, dest) = dest_dir();
    unpack_bytes(ArchiveKind::Zip, &ok, &dest, &small()).unwrap();
    let mode = fs::metadata(tmp.path().join("dest/dir/run.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o755);
    assert_eq!(
        fs::read_link(tmp.path().join("dest/dir/link")).unwrap(),
        Path::new("run.sh")
    );
    let dotdot = zip_with(|w| {
        w.start_file("../escaped", opts).unwrap();
        w.write_all(b"x").unwrap();
    });
    let absolute = zip_with(|w| {
        w.start_file("/tmp/escaped", opts).unwrap();
    });
    let link_out = zip_with(|w| {
        w.add_symlink("evil", "/", opts).unwrap();
    });
    for (what, bytes, needle) in [
        ("dotdot", dotdot, "'..'"),
        ("absolute", absolute, "absolute"),
        ("symlink out", link_out, "symbolic link"),
    ] {
        let (tmp, dest) = dest_dir();
        let err = unpack_bytes(ArchiveKind::Zip, &bytes, &dest, &small()).unwrap_err();
        assert!(err.contains(needle), "{what}: {err}");
        assert!(!tmp.path().join("escaped").exists());
    }
}

#[test]
fn destinations_stay_inside_the_task_dir() {
    let env = TaskEnv::default();
    let mut a = TaskArtifact::default();
    assert_eq!(
        destination(&a, &env, "x.tgz").unwrap(),
        (PathBuf::from("local"), "x.tgz".to_string())
    );
    a.relative_dest = "/local/conf".into();
    assert_eq!(
        destination(&a, &env, "x").unwrap().0,
        Path::new("local/conf")
    );
    a.getter_mode = "file".into();
    assert_eq!(
        destination(&a, &env, "x").unwrap(),
        (PathBuf::from("local"), "conf".to_string())
    );
    a.relative_dest = "../../etc".into();
    assert!(destination(&a, &env, "x").unwrap_err().contains("'..'"));
}

#[test]
fn archives_are_recognised_by_name() {
    assert_eq!(archive_kind("x.tar.gz"), Some(ArchiveKind::TarGz));
    assert_eq!(archive_kind("x.ZIP"), Some(ArchiveKind::Zip));
    assert_eq!(archive_kind("x.tbz2"), Some(ArchiveKind::TarBz2));
    assert_eq!(archive_kind("x.tar.xz"), Some(ArchiveKind::TarXz));
    assert_eq!(archive_kind("x.tar"), Some(ArchiveKind::Tar));
    assert_eq!(archive_kind("x.txt"), None);
}

#[tokio::test]
async fn a_destination_through_a_planted_symlink_is_refused_before_any_download() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("alloc1");
    let host = tmp.path().join("host");
    fs::create_dir_all(root.join("web/local")).unwrap();
    fs::create_dir_all(&host).unwrap();
    std::os::unix::fs::symlink(&host, root.join("web/local/evil")).unwrap();
    let art = TaskArtifact {
        // Nothing listens here: the refusal must come first.
        getter_source: "http://127.0.0.1:9/files/payload.txt".into(),
        relative_dest: "local/evil/tmp".into(),
        ..Default::default()
    };
    let err = fetch(&art, &TaskEnv::default(), &root, "web", "", &small())
        .await
        .unwrap_err();
    assert!(err.contains("symbolic link"), "{err}");
    assert!(
        fs::read_dir(&host).unwrap().next().is_none(),
        "wrote to the host dir"
    );
}

#[tokio::test]
async fn the_sandbox_routine_downloads_a_file_and_reports_a_404() {
    let app = axum::Router::new().route(
        "/files/hello.txt",
        axum::routing::get(|| async { "hello artifact" }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let (tmp, dest) = dest_dir();
    let req = FetchRequest {
        url: format!("http://{addr}/files/hello.txt"),
        file_name: "hello.txt".into(),
        archive: None,
        limits: small(),
        timeout_secs: 30,
    };
    // The routine runs a runtime of its own, as in the child.
    let r = req.clone();
    let fd = dest.try_clone().unwrap();
    tokio::task::spawn_blocking(move || run_request(&r, fd.as_fd()))
        .await
        .unwrap()
        .unwrap();
    let got = fs::read_to_string(tmp.path().join("dest/hello.txt")).unwrap();
    assert_eq!(got, "hello artifact");
    let missing = FetchRequest {
        url: format!("http://{addr}/files/nope.txt"),
        ..req
    };
    let err = tokio::task::spawn_blocking(move || run_request(&missing, dest.as_fd()))
        .await
        .unwrap()
        .unwrap_err();
    assert!(err.contains("404"), "{err}");
    // No temporary file is left behind.
    let names: Vec<_> = fs::read_dir(tmp.path().join("dest"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names, ["hello.txt"]);
}
