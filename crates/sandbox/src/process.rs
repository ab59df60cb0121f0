//! Running one untrusted command: bubblewrap as the project's own uid, empty environment,
//! limits, a deadline and an output cap.

use std::io::{Seek, Write};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::process::Command;
use tokio::sync::mpsc;

use crate::SandboxError;

/// How a command is run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub timeout: Duration,
    /// Bytes of output kept (the start and the end; the middle is dropped).
    pub output_cap: usize,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(600),
            output_cap: 64 * 1024,
        }
    }
}

/// What a command did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandResult {
    /// None when it was killed (timeout, signal).
    pub exit_code: Option<i32>,
    /// stdout and stderr interleaved as they arrived, capped.
    pub output: String,
    pub timed_out: bool,
    /// Bytes dropped from the middle of the output.
    pub omitted_bytes: usize,
    pub duration: Duration,
}

/// Keeps the first and the last part of a long output.
pub(crate) struct CappedOutput {
    head: Vec<u8>,
    tail: std::collections::VecDeque<u8>,
    cap_head: usize,
    cap_tail: usize,
    omitted: usize,
}

impl CappedOutput {
    pub(crate) fn new(cap: usize) -> Self {
        let cap_head = cap / 4;
        Self {
            head: Vec::new(),
            tail: std::collections::VecDeque::new(),
            cap_head,
            cap_tail: cap - cap_head,
            omitted: 0,
        }
    }

    pub(crate) fn push(&mut self, mut bytes: &[u8]) {
        if self.head.len() < self.cap_head {
            let take = (self.cap_head - self.head.len()).min(bytes.len());
            self.head.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
        }
        for &b in bytes {
            if self.tail.len() == self.cap_tail {
                self.tail.pop_front();
                self.omitted += 1;
            }
            self.tail.push_back(b);
        }
    }

    pub(crate) fn finish(self) -> (String, usize) {
        let mut out = String::from_utf8_lossy(&self.head).into_owned();
        if self.omitted > 0 {
            out.push_str(&format!(
                "\n[... {} bytes of output omitted ...]\n",
                self.omitted
            ));
        }
        let tail: Vec<u8> = self.tail.into_iter().collect();
        out.push_str(&String::from_utf8_lossy(&tail));
        (out, self.omitted)
    }
}

/// Who the sandbox runs as and what it sees.
#[derive(Clone, Debug)]
pub struct Isolation {
    /// The project's host uid/gid (only used when the server runs as root).
    pub uid: u32,
    pub gid: u32,
    pub max_processes: u32,
    pub max_file_bytes: u64,
    pub max_open_files: u32,
    pub tmp_bytes: u64,
    /// Extra environment inside the sandbox (egress proxy, registry, CA file).
    pub env: Vec<(String, String)>,
}

/// The bubblewrap options, NUL-separated, passed on stdin with `--args 0` so that host paths
/// never show in the sandbox's /proc/1/cmdline.
fn bwrap_args(
    workspace: &Path,
    iso: &Isolation,
    etc_dir: &Path,
    share_net: bool,
    root: bool,
) -> Vec<String> {
    let ws = workspace.display().to_string();
    let etc = etc_dir.display().to_string();
    let mut a: Vec<String> = Vec::new();
    let mut push = |items: &[&str]| a.extend(items.iter().map(|s| (*s).to_owned()));
    // New PID, IPC, UTS and cgroup namespaces, and a mount namespace (always). As root no user
    // namespace: bwrap keeps host root's rights to set up the mounts, and the command itself
    // drops to the project's uid (see `sandboxed`). Without root, an unprivileged user
    // namespace does the same job.
    push(&[
        "--unshare-ipc",
        "--unshare-pid",
        "--unshare-uts",
        "--unshare-cgroup-try",
    ]);
    if !share_net {
        push(&["--unshare-net"]);
    }
    if !root {
        push(&["--unshare-user", "--disable-userns"]);
    }
    push(&[
        "--die-with-parent",
        "--new-session",
        "--hostname",
        "sandbox",
        "--clearenv",
        "--setenv",
        "PATH",
        "/usr/bin:/bin",
        "--setenv",
        "HOME",
        "/workspace/.home",
        "--setenv",
        "LANG",
        "C.UTF-8",
        "--setenv",
        "TERM",
        "dumb",
        "--setenv",
        "CI",
        "1",
        "--setenv",
        "npm_config_cache",
        "/workspace/.home/.npm",
        "--setenv",
        "npm_config_update_notifier",
        "false",
        "--setenv",
        "npm_config_fund",
        "false",
        "--setenv",
        "npm_config_audit",
        "false",
        "--setenv",
        "NEXT_TELEMETRY_DISABLED",
        "1",
    ]);
    for (k, v) in &iso.env {
        a.extend(["--setenv".to_owned(), k.clone(), v.clone()]);
    }
    let mut push = |items: &[&str]| a.extend(items.iter().map(|s| (*s).to_owned()));
    push(&[
        "--ro-bind",
        "/usr",
        "/usr",
        // The host's own installs (cargo tools, scripts) stay out of sight.
        "--tmpfs",
        "/usr/local",
        "--remount-ro",
        "/usr/local",
        "--symlink",
        "usr/bin",
        "/bin",
        "--symlink",
        "usr/sbin",
        "/sbin",
        "--symlink",
        "usr/lib",
        "/lib",
        "--symlink",
        "usr/lib64",
        "/lib64",
        // Mount points are created 0700 when bwrap runs as root: open /etc up for reading.
        "--perms",
        "0755",
        "--dir",
        "/etc",
        "--ro-bind",
        "/etc/ssl",
        "/etc/ssl",
        "--ro-bind",
        "/etc/alternatives",
        "/etc/alternatives",
        "--ro-bind",
        "/etc/ld.so.cache",
        "/etc/ld.so.cache",
    ]);
    for f in ["passwd", "group", "hosts"] {
        a.extend([
            "--ro-bind".to_owned(),
            format!("{etc}/{f}"),
            format!("/etc/{f}"),
        ]);
    }
    a.extend(
        [
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--perms",
            "01777",
            "--size",
            "67108864",
            "--tmpfs",
            "/dev/shm",
            "--bind",
            &ws,
            "/workspace",
            "--chdir",
            "/workspace",
            "--perms",
            "01777",
            "--size",
            &iso.tmp_bytes.to_string(),
            "--tmpfs",
            "/tmp",
            "--remount-ro",
            "/",
        ]
        .iter()
        .map(|s| (*s).to_owned()),
    );
    a
}

/// Writes the generated /etc files the sandbox sees.
pub(crate) fn write_etc(etc_dir: &Path, iso: &Isolation) -> std::io::Result<()> {
    std::fs::create_dir_all(etc_dir)?;
    std::fs::write(
        etc_dir.join("passwd"),
        format!(
            "root:x:0:0::/nonexistent:/usr/sbin/nologin\napp:x:{}:{}::/workspace/.home:/bin/sh\n",
            iso.uid, iso.gid
        ),
    )?;
    std::fs::write(
        etc_dir.join("group"),
        format!("root:x:0:\napp:x:{}:\n", iso.gid),
    )?;
    std::fs::write(
        etc_dir.join("hosts"),
        "127.0.0.1 localhost\n::1 localhost ip6-localhost\n",
    )?;
    Ok(())
}

pub(crate) fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Where a sandboxed process runs: the project's network namespace and cgroups, if any.
#[derive(Clone, Debug, Default)]
pub(crate) struct Placement {
    /// `/proc/<pid>/ns/net` of the project's namespace (None: a private, empty one).
    pub netns: Option<String>,
    /// Shell prefix joining the project's cgroups (ends in `exec "$@"`).
    pub cgroup_join: Option<String>,
}

/// Builds the sandboxed command (not started).
///
/// As root (the normal case) the chain is:
/// `nsenter --net=<project ns>` -> `sh` joining the project's cgroups -> `bwrap` (namespaces,
/// mounts; run as root so that it can bind paths under directories only root may enter) ->
/// inside: `prlimit` -> `setpriv` to the project's own uid with no capabilities, an empty
/// bounding set and no-new-privs -> the command. Every process of the command therefore runs
/// as an unprivileged host uid that owns nothing but its workspace.
/// Without root, bwrap runs unprivileged in its own user namespace with a private network.
pub(crate) fn sandboxed(
    workspace: &Path,
    etc_dir: &Path,
    iso: &Isolation,
    place: &Placement,
    argv: &[&str],
) -> Result<Command, SandboxError> {
    let root = is_root();
    let mut opts = Vec::new();
    for arg in bwrap_args(workspace, iso, etc_dir, root && place.netns.is_some(), root) {
        opts.extend_from_slice(arg.as_bytes());
        opts.push(0);
    }
    // The options travel in an anonymous file on stdin (`--args 0`).
    let memfd = rustix::fs::memfd_create("bwrap-args", rustix::fs::MemfdFlags::CLOEXEC)
        .map_err(|e| SandboxError::Spawn(format!("memfd: {e}")))?;
    let mut file = std::fs::File::from(memfd);
    file.write_all(&opts)
        .and_then(|()| file.rewind())
        .map_err(|e| SandboxError::Spawn(format!("writing bwrap options: {e}")))?;

    let mut inner: Vec<String> = vec![
        "/usr/bin/prlimit".into(),
        format!("--nproc={}", iso.max_processes),
        format!("--fsize={}", iso.max_file_bytes),
        format!("--nofile={}", iso.max_open_files),
        "--core=0".into(),
        "--".into(),
    ];
    if root {
        inner.extend([
            "/usr/bin/setpriv".into(),
            format!("--reuid={}", iso.uid),
            format!("--regid={}", iso.gid),
            "--clear-groups".into(),
            "--inh-caps=-all".into(),
            "--bounding-set=-all".into(),
            "--no-new-privs".into(),
            "--".into(),
        ]);
    }
    inner.extend(argv.iter().map(|a| (*a).to_owned()));

    let mut outer: Vec<String> = Vec::new();
    if root && let Some(ns) = &place.netns {
        outer.extend([
            "/usr/bin/nsenter".into(),
            format!("--net={ns}"),
            "--".into(),
        ]);
    }
    if root && let Some(join) = &place.cgroup_join {
        outer.extend(["/bin/sh".into(), "-c".into(), join.clone(), "sh".into()]);
    }
    outer.extend([
        "/usr/bin/bwrap".into(),
        "--args".into(),
        "0".into(),
        "--".into(),
    ]);
    outer.extend(inner);

    let mut cmd = Command::new(&outer[0]);
    cmd.args(&outer[1..])
        // bwrap's own environment is readable as /proc/1/environ inside: keep it empty.
        .env_clear()
        .stdin(Stdio::from(file))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    Ok(cmd)
}

/// Runs `sh -c command` in the sandbox, streaming output chunks to `progress` (best effort).
pub(crate) async fn run_shell(
    workspace: &Path,
    etc_dir: &Path,
    iso: &Isolation,
    place: &Placement,
    command: &str,
    opts: &RunOptions,
    progress: Option<mpsc::Sender<String>>,
) -> Result<CommandResult, SandboxError> {
    let started = Instant::now();
    let mut cmd = sandboxed(workspace, etc_dir, iso, place, &["/bin/sh", "-c", command])?;
    let mut child = cmd
        .spawn()
        .map_err(|e| SandboxError::Spawn(format!("starting bubblewrap: {e}")))?;
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let mut out = CappedOutput::new(opts.output_cap);
    let mut buf_o = vec![0u8; 8192];
    let mut buf_e = vec![0u8; 8192];
    let deadline = tokio::time::Instant::now() + opts.timeout;
    let mut timed_out = false;
    while stdout.is_some() || stderr.is_some() {
        tokio::select! {
            r = async { match stdout.as_mut() { Some(s) => s.read(&mut buf_o).await, None => std::future::pending().await } } => {
                match r {
                    Ok(0) | Err(_) => stdout = None,
                    Ok(n) => { out.push(&buf_o[..n]); send(&progress, &buf_o[..n]); }
                }
            }
            r = async { match stderr.as_mut() { Some(s) => s.read(&mut buf_e).await, None => std::future::pending().await } } => {
                match r {
                    Ok(0) | Err(_) => stderr = None,
                    Ok(n) => { out.push(&buf_e[..n]); send(&progress, &buf_e[..n]); }
                }
            }
            () = tokio::time::sleep_until(deadline) => {
                timed_out = true;
                break;
            }
        }
    }
    let status = if timed_out {
        // Killing bwrap (PID 1 of the sandbox's PID namespace) takes every process with it.
        let _ = child.kill().await;
        None
    } else {
        match tokio::time::timeout_at(deadline, child.wait()).await {
            Ok(s) => s.ok(),
            Err(_) => {
                timed_out = true;
                let _ = child.kill().await;
                None
            }
        }
    };
    let (output, omitted_bytes) = out.finish();
    Ok(CommandResult {
        exit_code: status.and_then(|s| s.code()),
        output,
        timed_out,
        omitted_bytes,
        duration: started.elapsed(),
    })
}

fn send(progress: &Option<mpsc::Sender<String>>, bytes: &[u8]) {
    if let Some(tx) = progress {
        let _ = tx.try_send(String::from_utf8_lossy(bytes).into_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::CappedOutput;

    #[test]
    fn output_keeps_head_and_tail() {
        let mut o = CappedOutput::new(40);
        o.push(b"0123456789");
        o.push(&[b'x'; 100]);
        o.push(b"THE END");
        let (s, omitted) = o.finish();
        assert!(s.starts_with("0123456789"));
        assert!(s.ends_with("THE END"));
        assert_eq!(omitted, 10 + 100 + 7 - 40);
        assert!(s.contains("bytes of output omitted"));
    }
}
