use super::*;
use std::os::unix::fs::PermissionsExt;

#[test]
fn task_dirs_follow_nomads_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let ad = AllocDir::new(tmp.path(), "a1");
    let td = ad.build_task("web").unwrap();
    let root = tmp.path().join("alloc/a1");
    for p in [
        "alloc/logs",
        "alloc/data",
        "alloc/tmp",
        "web/local",
        "web/secrets",
        "web/tmp",
    ] {
        assert!(root.join(p).is_dir(), "{p} missing");
    }
    assert_eq!(td.stdout, root.join("alloc/logs/web.stdout.0"));
    let mode = fs::metadata(&td.secrets).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
    ad.destroy().unwrap();
    assert!(!root.exists());
    ad.destroy().unwrap();
}

#[test]
fn task_names_that_would_leave_the_alloc_dir_are_refused_and_create_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let ad = AllocDir::new(&tmp.path().join("data"), "a1");
    let outside = tmp.path().join("escaped");
    for name in [
        outside.to_str().unwrap(),
        "../../../escaped",
        "..",
        ".",
        "",
        "a/b",
        "a\\b",
        "a\0b",
        "alloc",
    ] {
        let err = ad.build_task(name).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{name:?}");
        assert!(err.to_string().contains("task name"), "{err}");
    }
    assert!(!outside.exists());
    assert!(!tmp.path().join("data/escaped").exists());
    assert!(!tmp.path().join("data/alloc/a1/alloc/local").exists());
}

#[test]
fn relative_paths_refuse_escapes_and_drop_dots() {
    assert_eq!(relative("p", "a/./b//c").unwrap(), Path::new("a/b/c"));
    assert_eq!(relative("p", "").unwrap(), Path::new(""));
    for bad in ["/etc", "../x", "a/../../x", "a\\..\\b", "a\0"] {
        let e = relative("path", bad).unwrap_err();
        assert!(e.0.starts_with("path "), "{e}");
    }
}

#[test]
fn a_symlink_in_place_of_a_task_directory_is_not_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let host = tmp.path().join("host");
    fs::create_dir(&host).unwrap();
    let ad = AllocDir::new(&tmp.path().join("data"), "a1");
    ad.build_task("web").unwrap();
    // The task swaps its secrets dir for a link to a host directory.
    fs::remove_dir(ad.root.join("web/secrets")).unwrap();
    std::os::unix::fs::symlink(&host, ad.root.join("web/secrets")).unwrap();
    fs::set_permissions(&host, fs::Permissions::from_mode(0o755)).unwrap();
    let err = ad.build_task("web").unwrap_err();
    assert!(is_link_refusal(&err), "{err}");
    // The host directory's mode is untouched (no chmod through the link).
    let mode = fs::metadata(&host).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o755);
}

#[test]
fn links_out_of_the_directory_are_refused_and_links_inside_followed_on_request() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    fs::create_dir_all(root.join("d")).unwrap();
    fs::write(root.join("d/f"), "inside").unwrap();
    fs::write(tmp.path().join("secret"), "host").unwrap();
    std::os::unix::fs::symlink("/", root.join("hostroot")).unwrap();
    std::os::unix::fs::symlink("../secret", root.join("up")).unwrap();
    std::os::unix::fs::symlink("d/f", root.join("alias")).unwrap();
    let dir = open_dir(&root).unwrap();
    let rd = OFlags::RDONLY;
    for (p, links) in [
        ("hostroot/etc/passwd", Links::Beneath),
        ("up", Links::Beneath),
        ("alias", Links::Never),
        ("hostroot", Links::Never),
    ] {
        let e = open_beneath(dir.as_fd(), Path::new(p), rd, Mode::empty(), links).unwrap_err();
        assert!(is_link_refusal(&e), "{p}: {e}");
    }
    let f = open_beneath(
        dir.as_fd(),
        Path::new("alias"),
        rd,
        Mode::empty(),
        Links::Beneath,
    )
    .unwrap();
    assert_eq!(io::read_to_string(File::from(f)).unwrap(), "inside");
    // The fallback walk refuses every link.
    let e = walk_nofollow(
        dir.as_fd(),
        Path::new("hostroot/etc/passwd"),
        rd,
        Mode::empty(),
    )
    .unwrap_err();
    assert!(is_link_refusal(&e), "{e}");
    let f = walk_nofollow(dir.as_fd(), Path::new("d/f"), rd, Mode::empty()).unwrap();
    assert_eq!(io::read_to_string(File::from(f)).unwrap(), "inside");
}

#[test]
fn log_files_are_never_written_through_a_symlink() {
    let tmp = tempfile::tempdir().unwrap();
    let ad = AllocDir::new(&tmp.path().join("data"), "a1");
    let td = ad.build_task("web").unwrap();
    let host = tmp.path().join("host-file");
    fs::write(&host, "host").unwrap();
    std::os::unix::fs::symlink(&host, &td.stdout).unwrap();
    let err = open_log_append(&td.stdout).unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");
    // A replaced logs directory is refused too.
    fs::remove_file(&td.stdout).unwrap();
    let logs = ad.logs();
    fs::rename(&logs, ad.shared().join("old-logs")).unwrap();
    std::os::unix::fs::symlink(tmp.path(), &logs).unwrap();
    assert!(open_log_append(&td.stdout).is_err());
    assert!(!tmp.path().join("web.stdout.0").exists());
    assert_eq!(fs::read_to_string(&host).unwrap(), "host");
    // The normal case appends.
    fs::remove_file(&logs).unwrap();
    use std::io::Write;
    open_log_append(&td.stdout)
        .unwrap()
        .write_all(b"a")
        .unwrap();
    open_log_append(&td.stdout)
        .unwrap()
        .write_all(b"b")
        .unwrap();
    assert_eq!(fs::read_to_string(&td.stdout).unwrap(), "ab");
}
