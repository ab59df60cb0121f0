//! The server's private mount namespace: where project disks and their overlays are mounted.
//!
//! A tiny holder process (`unshare --mount --propagation private` + `sleep`) owns the
//! namespace. Mounts are made inside it with util-linux's `mount` through `nsenter`; the server
//! reaches the mounted trees through `/proc/<holder>/root/...` (a path whose every component
//! the server chose) and every sandbox command enters the namespace before bubblewrap sets up
//! its own. Nothing is mounted in the host's namespace: when the server dies, even by SIGKILL,
//! the holder dies with it (parent-death signal), the namespace goes with its last process and
//! the kernel unmounts everything (loop devices detach by themselves: `mount -o loop` sets
//! autoclear).

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

use crate::SandboxError;

/// The holder of the server's mount namespace, alive while this value is.
pub struct MountNs {
    holder: Mutex<Child>,
    pid: u32,
}

fn setup(e: impl std::fmt::Display) -> SandboxError {
    SandboxError::Setup(e.to_string())
}

impl MountNs {
    /// A new private mount namespace (a copy of the server's own, nothing propagates back).
    /// Call from a long-lived thread (a runtime worker): the holder gets SIGKILL when the
    /// thread that started it ends.
    pub async fn create() -> Result<MountNs, SandboxError> {
        let mut holder = Command::new("/usr/bin/setpriv")
            .args([
                "--pdeathsig",
                "KILL",
                "--",
                "/usr/bin/unshare",
                "--mount",
                "--propagation",
                "private",
                "--",
                "/bin/sh",
                "-c",
                "echo ready && exec sleep infinity",
            ])
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group: a Ctrl-C or a SIGTERM to the server's group must not end
            // it before the server has stopped the sandboxes in order.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| setup(format!("creating the sandboxes' mount namespace: {e}")))?;
        let pid = holder
            .id()
            .ok_or_else(|| setup("the mount namespace holder exited at once"))?;
        let mut out = holder
            .stdout
            .take()
            .ok_or_else(|| setup("no stdout from the mount namespace holder"))?;
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(10), out.read(&mut buf))
            .await
            .map_err(|_| setup("the mount namespace did not come up in 10 s"))?
            .map_err(|e| setup(format!("mount namespace: {e}")))?;
        if !buf[..n].starts_with(b"ready") {
            let mut err = String::new();
            if let Some(mut e) = holder.stderr.take() {
                let _ =
                    tokio::time::timeout(Duration::from_secs(1), e.read_to_string(&mut err)).await;
            }
            return Err(setup(format!(
                "the sandboxes' mount namespace could not be set up (needs root and `unshare`): {}",
                err.trim()
            )));
        }
        Ok(MountNs {
            holder: Mutex::new(holder),
            pid,
        })
    }

    /// Whether the holder (and so the namespace) is still there.
    pub fn alive(&self) -> bool {
        self.holder
            .lock()
            .map(|mut h| matches!(h.try_wait(), Ok(None)))
            .unwrap_or(false)
    }

    /// `/proc/<holder>/ns/mnt`, for `nsenter --mount=`.
    pub fn ns_path(&self) -> String {
        format!("/proc/{}/ns/mnt", self.pid)
    }

    /// The path under which the server sees `path` as the namespace sees it (mounts included).
    /// `path` must be absolute and chosen by the server.
    pub fn view(&self, path: &Path) -> PathBuf {
        let rel = path.strip_prefix("/").unwrap_or(path);
        PathBuf::from(format!("/proc/{}/root", self.pid)).join(rel)
    }

    /// Runs a util-linux tool (`mount`, `umount`) inside the namespace. `stdin`: an fd the
    /// tool sees as 0 (a mount target given as `/proc/self/fd/0`).
    pub async fn run(
        &self,
        tool: &str,
        args: &[&str],
        stdin: Option<OwnedFd>,
    ) -> Result<(), String> {
        let ns = format!("--mount={}", self.ns_path());
        let mut cmd = Command::new("/usr/bin/nsenter");
        cmd.arg(ns)
            .arg("--")
            .arg(tool)
            .args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("LC_ALL", "C")
            .stdin(stdin.map_or_else(Stdio::null, Stdio::from))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
            .await
            .map_err(|_| format!("{tool} took more than 60 s"))?
            .map_err(|e| format!("running {tool}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{tool} {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// The same as [`MountNs::run`], blocking (for Drop paths).
    pub fn run_blocking(&self, tool: &str, args: &[&str]) -> Result<(), String> {
        let out = std::process::Command::new("/usr/bin/nsenter")
            .arg(format!("--mount={}", self.ns_path()))
            .arg("--")
            .arg(tool)
            .args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| format!("running {tool}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }

    /// Mount points inside the namespace at or below `dir` (from its mountinfo).
    pub fn mounts_under(&self, dir: &Path) -> Vec<PathBuf> {
        let info =
            std::fs::read_to_string(format!("/proc/{}/mountinfo", self.pid)).unwrap_or_default();
        let dir = dir.to_string_lossy();
        info.lines()
            .filter_map(|l| l.split(' ').nth(4))
            .map(unescape_mountinfo)
            .filter(|m| m == dir.as_ref() || m.starts_with(&format!("{dir}/")))
            .map(PathBuf::from)
            .collect()
    }
}

/// mountinfo escapes space, tab, newline and backslash as octal (`\040`).
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::unescape_mountinfo;

    #[test]
    fn mountinfo_paths_are_unescaped() {
        assert_eq!(unescape_mountinfo("/a\\040b"), "/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
        assert_eq!(unescape_mountinfo("/x\\134y"), "/x\\y");
    }
}
