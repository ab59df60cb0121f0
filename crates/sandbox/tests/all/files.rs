//! Host-side file operations on a workspace against planted symlinks, FIFOs and paths.

use std::collections::BTreeMap;
use std::path::Path;

use codeflux_sandbox::workspace::{FileError, Workspace, clean_path};

#[test]
fn paths_are_cleaned_or_refused() {
    assert_eq!(clean_path("./src//App.tsx").unwrap(), "src/App.tsx");
    for bad in ["", "/etc/passwd", "../x", "src/../../x", "~/x", "a\0b", "."] {
        assert!(clean_path(bad).is_err(), "{bad:?} should be refused");
    }
}

#[test]
fn file_tools_never_leave_the_workspace() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.env"), "SECRET=1").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ws = Workspace::open(dir.path(), None).unwrap();
    ws.write("src/App.tsx", "export default 1\n").unwrap();
    assert_eq!(ws.read("src/App.tsx").unwrap(), "export default 1\n");

    // Planted links, as a command in the sandbox could make them.
    std::os::unix::fs::symlink("/etc/passwd", dir.path().join("link.txt")).unwrap();
    std::os::unix::fs::symlink("/", dir.path().join("rootlink")).unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("out")).unwrap();
    std::os::unix::fs::symlink("../..", dir.path().join("src/up")).unwrap();
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        dir.path().join("pipe"),
        rustix::fs::Mode::from_raw_mode(0o644),
    )
    .unwrap();

    for path in [
        "link.txt",
        "rootlink/etc/passwd",
        "out/secret.env",
        "src/up/etc/passwd",
        "../etc/passwd",
        "/etc/passwd",
    ] {
        let err = ws.read(path).unwrap_err();
        assert!(
            matches!(err, FileError::Escapes(_) | FileError::InvalidPath { .. }),
            "{path}: {err:?}"
        );
    }
    assert!(
        matches!(ws.read("pipe").unwrap_err(), FileError::NotRegular { .. }),
        "a FIFO never blocks a read"
    );
    for path in [
        "rootlink/tmp/escape.txt",
        "out/written.txt",
        "src/up/escape.txt",
        "../escape.txt",
        "/tmp/escape.txt",
    ] {
        assert!(ws.write(path, "x").is_err(), "{path} must not be written");
    }
    assert!(!outside.path().join("written.txt").exists());
    assert!(!Path::new("/tmp/escape.txt").exists());
    // Writing over a symlink replaces the link; the target is untouched.
    ws.write("link.txt", "mine").unwrap();
    assert_eq!(ws.read("link.txt").unwrap(), "mine");
    assert!(
        std::fs::read_to_string("/etc/passwd")
            .unwrap()
            .contains("root")
    );

    // Listing shows regular files only and skips installed packages.
    ws.write("node_modules/x/index.js", "x").unwrap();
    assert_eq!(ws.list().unwrap(), vec!["link.txt", "src/App.tsx"]);
    let snap = ws.snapshot().unwrap();
    assert_eq!(snap.len(), 2);

    ws.replace_sources(&BTreeMap::from([(
        "src/main.ts".to_owned(),
        "new".to_owned(),
    )]))
    .unwrap();
    assert_eq!(ws.list().unwrap(), vec!["src/main.ts"]);
    assert!(
        dir.path().join("node_modules/x/index.js").exists(),
        "packages survive a restore"
    );
}
