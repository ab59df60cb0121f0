//! Directory operations relative to directory fds that never follow a link.
//!
//! Used on trees a sandbox may have written (a disk's trash, an old workspace): every name is
//! looked up in the directory fd it belongs to, with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
//! RESOLVE_NO_XDEV`, so a planted symlink or mount point is removed or refused, never entered.

use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

const RESOLVE: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS)
    .union(ResolveFlags::NO_XDEV);

/// Opens the directory `name` inside `parent` (never through a link, never onto another mount).
pub fn open_dir_at(parent: &impl AsFd, name: &str) -> Result<OwnedFd, Errno> {
    rustix::fs::openat2(
        parent,
        name,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
        RESOLVE,
    )
}

/// Opens a directory by an absolute path the server chose (no component of it comes from a
/// sandbox); the last component must not be a link.
pub fn open_dir(path: &std::path::Path) -> Result<OwnedFd, Errno> {
    rustix::fs::open(
        path,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
    )
}

/// The directory `name` in `parent`, created if missing, with this mode and owner. Whatever
/// else is there under that name (a file, a link) is moved out of the way first.
pub fn ensure_dir_at(
    parent: &impl AsFd,
    name: &str,
    mode: u32,
    owner: Option<(u32, u32)>,
) -> Result<OwnedFd, Errno> {
    match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {}
        Ok(_) => rustix::fs::unlinkat(parent, name, AtFlags::empty())?,
        Err(Errno::NOENT) => {}
        Err(e) => return Err(e),
    }
    match rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(mode)) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => return Err(e),
    }
    let fd = open_dir_at(parent, name)?;
    if let Some((u, g)) = owner {
        rustix::fs::fchown(
            &fd,
            Some(rustix::process::Uid::from_raw(u)),
            Some(rustix::process::Gid::from_raw(g)),
        )?;
    }
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))?;
    Ok(fd)
}

/// What [`remove_tree_at`] left behind.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Removal {
    pub removed: u64,
    /// Entries that could not be removed (too deep, or an error).
    pub left: u64,
}

/// Removes `name` in `parent` and everything below it, without following any link: links are
/// unlinked, directories are entered by fd. Trees deeper than `max_depth` are left in place
/// (counted in `left`); nothing outside the tree is ever touched.
pub fn remove_tree_at(parent: &impl AsFd, name: &str, max_depth: usize) -> Removal {
    let mut r = Removal::default();
    remove_entry(parent.as_fd(), OsStr::new(name), max_depth, &mut r);
    r
}

fn remove_entry(parent: std::os::fd::BorrowedFd<'_>, name: &OsStr, depth: usize, r: &mut Removal) {
    let st = match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::NOENT) => return,
        Err(_) => {
            r.left += 1;
            return;
        }
    };
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
        match rustix::fs::unlinkat(parent, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => r.removed += 1,
            Err(_) => r.left += 1,
        }
        return;
    }
    if depth == 0 {
        r.left += 1;
        return;
    }
    let Ok(dir) = rustix::fs::openat2(
        parent,
        name,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
        RESOLVE,
    ) else {
        r.left += 1;
        return;
    };
    // Directories whose mode keeps even their owner out (0000) are opened up first.
    let _ = rustix::fs::fchmod(&dir, Mode::from_raw_mode(0o700));
    loop {
        // Read a batch of names, then remove them (removing while reading skips entries).
        let mut names: Vec<Vec<u8>> = Vec::new();
        match rustix::fs::Dir::read_from(&dir) {
            Ok(entries) => {
                for e in entries.flatten() {
                    let n = e.file_name().to_bytes();
                    if n != b"." && n != b".." {
                        names.push(n.to_vec());
                    }
                    if names.len() >= 4096 {
                        break;
                    }
                }
            }
            Err(_) => {
                r.left += 1;
                break;
            }
        }
        if names.is_empty() {
            break;
        }
        let before = r.removed;
        for n in &names {
            remove_entry(dir.as_fd(), OsStr::from_bytes(n), depth - 1, r);
        }
        if r.removed == before {
            break; // nothing more can go: leave the rest
        }
    }
    match rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => r.removed += 1,
        Err(_) => r.left += 1,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn trees_are_removed_without_following_links() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("keep.txt"), "keep").unwrap();
        let base = tempfile::tempdir().unwrap();
        let t = base.path().join("t");
        std::fs::create_dir_all(t.join("a/b/c")).unwrap();
        std::fs::write(t.join("a/b/c/f"), "x").unwrap();
        std::os::unix::fs::symlink(outside.path(), t.join("a/link")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("keep.txt"), t.join("file-link")).unwrap();
        let fd = open_dir(base.path()).unwrap();
        let r = remove_tree_at(&fd, "t", 64);
        assert_eq!(r.left, 0, "{r:?}");
        assert!(!t.exists());
        assert_eq!(
            std::fs::read_to_string(outside.path().join("keep.txt")).unwrap_or_default(),
            "keep"
        );
    }

    #[test]
    fn too_deep_trees_are_left_not_followed() {
        let base = tempfile::tempdir().unwrap();
        let mut p = base.path().join("t");
        for _ in 0..10 {
            p = p.join("d");
        }
        std::fs::create_dir_all(&p).unwrap();
        let fd = open_dir(base.path()).unwrap();
        let r = remove_tree_at(&fd, "t", 4);
        assert!(r.left > 0);
        assert!(base.path().join("t").exists());
        let r = remove_tree_at(&fd, "t", 64);
        assert_eq!(r.left, 0);
        assert!(!base.path().join("t").exists());
    }
}
