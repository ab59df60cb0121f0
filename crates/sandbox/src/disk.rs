//! Each project's disk: a sparse ext4 image of `CODEFLUX_SANDBOX_DISK_MB`, loop-mounted in the
//! server's private mount namespace ([`crate::mountns`]), holding everything the project
//! writes: its workspace (sources, installed packages, npm cache under `.home`) and its
//! `/tmp`. Writing past the size fails inside the sandbox with ENOSPC; the host's disk, the
//! database and other projects never see it. `discard` gives deleted blocks back to the host.
//!
//! Layout, in `<data>/sandboxes/<project>/` (every name chosen by the server, none visible to
//! a sandbox):
//!
//! ```text
//! disk.img            the image (root, 0600)
//! disk/               its mount point; the image's root directory is root's, 0755:
//!   upper/            the workspace's own files: the overlay's upper layer (project uid)
//!   work/             overlayfs' work directory
//!   tmp/              the sandbox's /tmp (01777), new for every runtime
//!   trash/            what is being removed
//! ws/                 the workspace: overlayfs of the template's installed packages (lower,
//!                     read-only, shared) under upper/ -> bound at /workspace in every sandbox
//! ```
//!
//! Sandboxes see only `ws/` (as /workspace) and `disk/tmp` (as /tmp), so the directories the
//! server works in (`disk/` itself, `upper`, `work`, `trash`) can never be replaced by links.
//! What the server does inside the sandbox's own trees (`upper/...`) is fd-relative and never
//! follows a link ([`crate::fsutil`], [`crate::workspace`]).
//!
//! Every runtime starts with the template's packages as the project's record says, not as the
//! workspace left them: `upper/node_modules` (whatever the sandbox made of it: a directory, a
//! link to a host path, a file) is moved to the trash before the overlay is mounted, and the
//! packages that the project's package.json adds are installed again in the sandbox (from the
//! npm cache the disk keeps).
//!
//! Without root (no loop devices, no overlayfs) a plain directory stands in: no size cap and no
//! template packages (logged at start).

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rustix::fs::{AtFlags, FileType};
use rustix::io::Errno;

use crate::SandboxError;
use crate::fsutil::{self, ensure_dir_at, open_dir, open_dir_at, remove_tree_at};
use crate::mountns::MountNs;

/// Deepest tree the server removes from a trash (deeper parts stay, on the project's own disk).
const TRASH_DEPTH: usize = 512;

fn setup(e: impl std::fmt::Display) -> SandboxError {
    SandboxError::Setup(e.to_string())
}

/// Characters that cannot appear in paths given to mount options (overlayfs splits on them).
pub fn check_mount_path(p: &Path) -> Result<(), SandboxError> {
    let s = p.to_string_lossy();
    if s.chars()
        .any(|c| matches!(c, ',' | ':' | '\\' | '"' | '\'') || c.is_whitespace() || c.is_control())
    {
        return Err(setup(format!(
            "the path {s} contains a character (comma, colon, quote, backslash or space) that \
             mount options cannot carry; choose another CODEFLUX_DATA_DIR or CODEFLUX_TEMPLATE_CACHE"
        )));
    }
    Ok(())
}

/// A project's mounted disk, unmounted when dropped.
pub struct ProjectDisk {
    kind: Kind,
    dir: PathBuf,
    attached: AtomicBool,
}

enum Kind {
    Image { ns: Arc<MountNs>, root: OwnedFd },
    Plain,
}

/// Settings of a disk.
pub struct DiskSpec<'a> {
    /// `<data>/sandboxes/<project>`.
    pub dir: &'a Path,
    pub size_bytes: u64,
    /// The project's uid/gid (owner of the workspace).
    pub owner: Option<(u32, u32)>,
    /// The template's installed packages (a directory with `node_modules`), the overlay's lower.
    pub lower: Option<&'a Path>,
}

impl ProjectDisk {
    /// Mounts (creating it if needed) the project's disk in `ns`, resets what every runtime
    /// starts fresh (packages, /tmp) and mounts the workspace overlay.
    pub async fn attach(
        ns: Arc<MountNs>,
        spec: &DiskSpec<'_>,
    ) -> Result<ProjectDisk, SandboxError> {
        let dir = spec.dir.to_path_buf();
        for d in [dir.clone(), dir.join("disk"), dir.join("ws")] {
            std::fs::create_dir_all(&d)
                .map_err(|e| setup(format!("creating {}: {e}", d.display())))?;
        }
        set_mode(&dir, 0o700)?;
        // Leftovers of a runtime whose unmount did not finish.
        let mut stale = ns.mounts_under(&dir);
        stale.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
        for m in stale {
            let m = m.to_string_lossy().into_owned();
            if let Err(e) = ns.run("/usr/bin/umount", &["-l", &m], None).await {
                tracing::warn!("unmounting a stale sandbox mount {m}: {e}");
            }
        }
        let image = dir.join("disk.img");
        let fresh = ensure_image(&image, spec.size_bytes).await?;
        let disk_mnt = dir.join("disk");
        let mount_image = || {
            let (img, mnt) = (image.to_string_lossy(), disk_mnt.to_string_lossy());
            let ns = ns.clone();
            let (img, mnt) = (img.into_owned(), mnt.into_owned());
            async move {
                ns.run(
                    "/usr/bin/mount",
                    &[
                        "-o",
                        "loop,nosuid,nodev,noatime,discard,noinit_itable",
                        &img,
                        &mnt,
                    ],
                    None,
                )
                .await
            }
        };
        if let Err(e) = mount_image().await {
            if fresh {
                return Err(setup(format!("mounting the project's disk: {e}")));
            }
            // A damaged image: the project's files come back from its latest version.
            tracing::warn!(image = %image.display(), "the project's disk did not mount ({e}); making a new one");
            create_image(&image, spec.size_bytes).await?;
            mount_image()
                .await
                .map_err(|e| setup(format!("mounting the project's new disk: {e}")))?;
        }
        let root = open_dir(&ns.view(&disk_mnt))
            .map_err(|e| setup(format!("opening the project's disk: {e}")))?;
        // From here on, dropping `disk` unmounts.
        let disk = ProjectDisk {
            kind: Kind::Image {
                ns: ns.clone(),
                root,
            },
            dir: dir.clone(),
            attached: AtomicBool::new(true),
        };
        let Kind::Image { root, .. } = &disk.kind else {
            return Err(setup("internal: disk kind"));
        };
        prepare_layout(root, spec.owner)?;
        let upper = disk_mnt.join("upper");
        let work = disk_mnt.join("work");
        let ws = dir.join("ws");
        let mut opts = format!("upperdir={},workdir={}", upper.display(), work.display());
        match spec.lower {
            Some(lower) => opts = format!("lowerdir={},{opts}", lower.display()),
            // overlayfs needs a lower layer: an empty directory of the disk's own.
            None => {
                ensure_dir_at(root, "empty", 0o755, None)
                    .map_err(|e| setup(format!("empty lower: {e}")))?;
                opts = format!("lowerdir={},{opts}", disk_mnt.join("empty").display());
            }
        }
        let ws_s = ws.to_string_lossy().into_owned();
        let mut tries = 0;
        loop {
            match ns
                .run(
                    "/usr/bin/mount",
                    &[
                        "-t",
                        "overlay",
                        "overlay",
                        "-o",
                        &format!("{opts},nosuid,nodev"),
                        &ws_s,
                    ],
                    None,
                )
                .await
            {
                Ok(()) => break,
                // The previous runtime's overlay may still be draining (upper in use).
                Err(e) if tries < 25 => {
                    tries += 1;
                    tracing::debug!("overlay mount retry: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(setup(format!("mounting the workspace: {e}"))),
            }
        }
        disk.empty_trash_in_background();
        Ok(disk)
    }

    /// A plain directory as the disk (no root: no image, no overlay, no cap).
    pub fn plain(spec: &DiskSpec<'_>) -> Result<ProjectDisk, SandboxError> {
        let dir = spec.dir.to_path_buf();
        std::fs::create_dir_all(&dir)
            .map_err(|e| setup(format!("creating {}: {e}", dir.display())))?;
        let fd = open_dir(&dir).map_err(|e| setup(format!("opening {}: {e}", dir.display())))?;
        let trash =
            ensure_dir_at(&fd, "trash", 0o700, None).map_err(|e| setup(format!("trash: {e}")))?;
        to_trash(&fd, "tmp", &trash);
        ensure_dir_at(&fd, "ws", 0o700, spec.owner)
            .map_err(|e| setup(format!("workspace: {e}")))?;
        ensure_dir_at(&fd, "tmp", 0o1777, None).map_err(|e| setup(format!("tmp: {e}")))?;
        let r = remove_trash(&trash);
        if r.left > 0 {
            tracing::warn!(dir = %dir.display(), left = r.left, "could not empty a sandbox trash");
        }
        Ok(ProjectDisk {
            kind: Kind::Plain,
            dir,
            attached: AtomicBool::new(true),
        })
    }

    /// The workspace as mounted for sandboxes (bind source of /workspace).
    pub fn workspace_path(&self) -> PathBuf {
        self.dir.join("ws")
    }

    /// The sandbox's /tmp (bind source).
    pub fn tmp_path(&self) -> PathBuf {
        match self.kind {
            Kind::Image { .. } => self.dir.join("disk").join("tmp"),
            Kind::Plain => self.dir.join("tmp"),
        }
    }

    /// Where the server opens the workspace (through the mount namespace).
    pub fn workspace_view(&self) -> PathBuf {
        match &self.kind {
            Kind::Image { ns, .. } => ns.view(&self.workspace_path()),
            Kind::Plain => self.workspace_path(),
        }
    }

    /// Whether this disk has a size cap.
    pub fn is_capped(&self) -> bool {
        matches!(self.kind, Kind::Image { .. })
    }

    fn empty_trash_in_background(&self) {
        let Kind::Image { root, .. } = &self.kind else {
            return;
        };
        let Ok(root) = rustix::io::dup(root) else {
            return;
        };
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || {
            let Ok(trash) = open_dir_at(&root, "trash") else {
                return;
            };
            let r = remove_trash(&trash);
            if r.left > 0 {
                tracing::warn!(dir = %dir.display(), left = r.left, "could not empty a sandbox trash completely");
            }
        });
    }

    /// Unmounts the workspace and the disk (waits a little for users to go, then detaches
    /// lazily).
    pub async fn detach(&self) {
        if !self.attached.swap(false, Ordering::SeqCst) {
            return;
        }
        let Kind::Image { ns, .. } = &self.kind else {
            return;
        };
        for target in [self.dir.join("ws"), self.dir.join("disk")] {
            let t = target.to_string_lossy().into_owned();
            let mut done = false;
            for _ in 0..10 {
                if ns.run("/usr/bin/umount", &[&t], None).await.is_ok() {
                    done = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if !done && let Err(e) = ns.run("/usr/bin/umount", &["-l", &t], None).await {
                tracing::warn!("unmounting {t}: {e}");
            }
        }
    }

    fn detach_blocking(&self) {
        if !self.attached.swap(false, Ordering::SeqCst) {
            return;
        }
        let Kind::Image { ns, .. } = &self.kind else {
            return;
        };
        for target in [self.dir.join("ws"), self.dir.join("disk")] {
            let t = target.to_string_lossy().into_owned();
            if ns.run_blocking("/usr/bin/umount", &[&t]).is_err()
                && let Err(e) = ns.run_blocking("/usr/bin/umount", &["-l", &t])
            {
                tracing::warn!("unmounting {t}: {e}");
            }
        }
    }
}

impl Drop for ProjectDisk {
    fn drop(&mut self) {
        self.detach_blocking();
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<(), SandboxError> {
    rustix::fs::chmod(path, rustix::fs::Mode::from_raw_mode(mode))
        .map_err(|e| setup(format!("chmod {}: {e}", path.display())))
}

/// The disk's root: `upper` (project's), `work`, `tmp` and `trash` made as they must be; what a
/// runtime starts fresh (`upper/node_modules`, `tmp`, overlayfs' `work`) moved to the trash.
fn prepare_layout(root: &OwnedFd, owner: Option<(u32, u32)>) -> Result<(), SandboxError> {
    let e = |what: &str, err: Errno| setup(format!("preparing the project's disk ({what}): {err}"));
    rustix::fs::fchmod(root, rustix::fs::Mode::from_raw_mode(0o755)).map_err(|x| e("root", x))?;
    let trash = ensure_dir_at(root, "trash", 0o700, None).map_err(|x| e("trash", x))?;
    let upper = ensure_dir_at(root, "upper", 0o755, owner).map_err(|x| e("upper", x))?;
    to_trash(&upper, "node_modules", &trash);
    remove_top_level_oddities(&upper);
    to_trash(root, "work", &trash);
    to_trash(root, "tmp", &trash);
    ensure_dir_at(root, "work", 0o700, None).map_err(|x| e("work", x))?;
    ensure_dir_at(root, "tmp", 0o1777, None).map_err(|x| e("tmp", x))?;
    Ok(())
}

/// Links, FIFOs, sockets and devices at the workspace's top level (a version never has them;
/// overlayfs' whiteouts there could only hide the template's packages) are removed.
fn remove_top_level_oddities(upper: &OwnedFd) {
    let Ok(entries) = rustix::fs::Dir::read_from(upper) else {
        return;
    };
    let odd: Vec<std::ffi::CString> = entries
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_bytes();
            n != b"." && n != b".."
        })
        .filter(|e| {
            rustix::fs::statat(upper, e.file_name(), AtFlags::SYMLINK_NOFOLLOW).is_ok_and(|st| {
                !matches!(
                    FileType::from_raw_mode(st.st_mode),
                    FileType::Directory | FileType::RegularFile
                )
            })
        })
        .map(|e| e.file_name().to_owned())
        .collect();
    for name in odd {
        if let Err(err) = rustix::fs::unlinkat(upper, name.as_c_str(), AtFlags::empty()) {
            tracing::warn!("removing {name:?} from a workspace: {err}");
        }
    }
}

/// Moves `name` (whatever it is; a link is moved, not followed) from `dir` into the trash.
fn to_trash(dir: &impl AsFd, name: &str, trash: &OwnedFd) {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if FileType::from_raw_mode(st.st_mode) != FileType::Directory => {
            if let Err(err) = rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
                tracing::warn!("removing {name}: {err}");
            }
        }
        Ok(_) => {
            let to = uuid::Uuid::new_v4().simple().to_string();
            if let Err(err) = rustix::fs::renameat(dir, name, trash, to.as_str()) {
                tracing::warn!("moving {name} to the trash: {err}");
            }
        }
        Err(_) => {}
    }
}

/// Empties a trash directory (fd-relative, no link followed).
fn remove_trash(trash: &OwnedFd) -> fsutil::Removal {
    let mut total = fsutil::Removal::default();
    let Ok(entries) = rustix::fs::Dir::read_from(trash) else {
        return total;
    };
    let names: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().ok().map(str::to_owned))
        .filter(|n| n != "." && n != "..")
        .collect();
    for n in names {
        let r = remove_tree_at(trash, &n, TRASH_DEPTH);
        total.removed += r.removed;
        total.left += r.left;
    }
    total
}

/// Makes sure the image exists with the right size. Returns whether it was just made.
async fn ensure_image(image: &Path, size: u64) -> Result<bool, SandboxError> {
    match std::fs::symlink_metadata(image) {
        Ok(m) if m.file_type().is_file() && m.len() == size => Ok(false),
        Ok(m) => {
            if m.file_type().is_file() {
                tracing::info!(image = %image.display(), from = m.len(), to = size, "the disk size changed: the project's disk is made anew");
            }
            create_image(image, size).await?;
            Ok(true)
        }
        Err(_) => {
            create_image(image, size).await?;
            Ok(true)
        }
    }
}

/// A new sparse image with an empty ext4 file system (no blocks reserved for root: the whole
/// size is the project's).
async fn create_image(image: &Path, size: u64) -> Result<(), SandboxError> {
    let tmp = image.with_extension("img.new");
    let _ = std::fs::remove_file(&tmp);
    {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| setup(format!("creating {}: {e}", tmp.display())))?;
        f.set_len(size)
            .map_err(|e| setup(format!("sizing {}: {e}", tmp.display())))?;
    }
    set_mode(&tmp, 0o600)?;
    let out = tokio::process::Command::new("/usr/sbin/mkfs.ext4")
        .args([
            "-q",
            "-F",
            "-m",
            "0",
            "-E",
            "lazy_itable_init=1,lazy_journal_init=1,root_owner=0:0",
        ])
        .arg(&tmp)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .await
        .map_err(|e| setup(format!("running mkfs.ext4 (package e2fsprogs): {e}")))?;
    if !out.status.success() {
        let _ = std::fs::remove_file(&tmp);
        return Err(setup(format!(
            "mkfs.ext4 failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    std::fs::rename(&tmp, image).map_err(|e| setup(format!("installing the disk image: {e}")))
}

/// Removes a project's disk and everything of its sandbox (the project is deleted). The
/// runtime must be stopped. Nothing in `dir` is the sandbox's except inside the image (one
/// file) or, without root, the plain workspace (removed fd-relative).
pub fn remove_project_dir(dir: &Path) -> Result<(), SandboxError> {
    let Some(parent) = dir.parent() else {
        return Ok(());
    };
    let Some(name) = dir.file_name().and_then(|n| n.to_str()) else {
        return Ok(());
    };
    let pfd = match open_dir(parent) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(setup(format!("opening {}: {e}", parent.display()))),
    };
    let r = remove_tree_at(&pfd, name, TRASH_DEPTH);
    if r.left > 0 {
        return Err(setup(format!(
            "{} entries of {} could not be removed",
            r.left,
            dir.display()
        )));
    }
    Ok(())
}
