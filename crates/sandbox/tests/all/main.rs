//! The sandbox for real: workspace files against planted links, commands in bubblewrap under
//! seccomp and cgroups, project disks, runtimes' lifecycle, the dev server's supervisor.
//!
//! Most tests need root, as the local sandboxes do (CI runs as root).

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod check;
mod commands;
mod devserver;
mod e2b;
mod files;
mod lifecycle;
mod links;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use codeflux_sandbox::local::{LocalConfig, LocalProvider};
use codeflux_sandbox::{CommandResult, RunOptions, Sandbox};

pub fn templates_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sandbox-templates")
}

/// The backend's settings for a test: no dev servers unless the test turns them on.
pub fn config(data: &Path) -> LocalConfig {
    LocalConfig {
        dev_servers: false,
        ..LocalConfig::new(data.to_path_buf(), templates_dir(), 3000).with_host_npm()
    }
}

pub fn provider(data: &Path) -> LocalProvider {
    LocalProvider::new(config(data)).unwrap()
}

pub fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "the sandbox tests need root, as the local sandboxes do"
    );
}

/// Runs a command in the sandbox with the default options.
pub async fn sh(sb: &Arc<dyn Sandbox>, cmd: &str) -> CommandResult {
    sb.run(cmd, &RunOptions::default(), None).await.unwrap()
}

/// Polls `f` every 100 ms until it is true, at most `limit`.
pub async fn wait_until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A root-owned canary outside the data dir: its type, mode, owner, content or entries.
#[derive(Debug, PartialEq, Eq)]
pub struct Canary {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub content: Option<Vec<u8>>,
    pub entries: Option<Vec<String>>,
}

impl Canary {
    pub fn read(path: &Path) -> Canary {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::symlink_metadata(path).unwrap();
        let (content, entries) = if m.is_dir() {
            let mut e: Vec<String> = std::fs::read_dir(path)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            e.sort();
            (None, Some(e))
        } else {
            (Some(std::fs::read(path).unwrap()), None)
        };
        Canary {
            mode: m.mode(),
            uid: m.uid(),
            gid: m.gid(),
            content,
            entries,
        }
    }
}

/// A root-owned 0700 directory and 0600 file under /var/tmp (outside every data dir).
pub struct Canaries {
    pub dir: PathBuf,
    pub file: PathBuf,
    _keep: tempfile::TempDir,
    before: Vec<(PathBuf, Canary)>,
}

impl Canaries {
    #[allow(clippy::new_without_default)]
    pub fn new() -> Canaries {
        use std::os::unix::fs::PermissionsExt;
        let keep = tempfile::Builder::new()
            .prefix("cf-canary-")
            .tempdir_in("/var/tmp")
            .unwrap();
        std::fs::set_permissions(keep.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let dir = keep.path().join("dir");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let file = keep.path().join("file");
        std::fs::write(
            &file,
            format!("CANARY {} root only\n", uuid::Uuid::new_v4()),
        )
        .unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let before = vec![
            (dir.clone(), Canary::read(&dir)),
            (file.clone(), Canary::read(&file)),
        ];
        Canaries {
            dir,
            file,
            _keep: keep,
            before,
        }
    }

    /// Asserts that no canary changed (content, mode, owner, entries).
    pub fn assert_unchanged(&self, when: &str) {
        for (path, before) in &self.before {
            let now = Canary::read(path);
            assert_eq!(&now, before, "{when}: canary {} changed", path.display());
        }
    }
}
