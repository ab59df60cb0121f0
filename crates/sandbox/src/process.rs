//! Running one untrusted command: bubblewrap as the project's own uid, empty environment,
//! limits, a deadline and an output cap.

use std::io::{Seek, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::process::Command;
use tokio::sync::mpsc;

use crate::SandboxError;
use crate::cgroup::Leaf;
use crate::output::CappedOutput;

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

/// Who the sandbox runs as and what it sees.
#[derive(Clone, Debug)]
pub struct Isolation {
    /// The project's host uid/gid (only used when the server runs as root).
    pub uid: u32,
    pub gid: u32,
    pub max_processes: u32,
    pub max_file_bytes: u64,
    pub max_open_files: u32,
    /// Extra environment inside the sandbox (egress proxy, registry, CA file).
    pub env: Vec<(String, String)>,
}

/// Everything a project's sandboxed processes are started with.
#[derive(Clone, Debug)]
pub(crate) struct SandboxSpec {
    /// Bound at /workspace (as the mount namespace sees it).
    pub workspace: PathBuf,
    /// Bound at /tmp.
    pub tmp: PathBuf,
    /// The generated /etc files (passwd, group, hosts).
    pub etc: PathBuf,
    pub iso: Isolation,
    /// `/proc/<pid>/ns/net` of the project's namespace (None: a private, empty one).
    pub netns: Option<String>,
    /// `/proc/<pid>/ns/mnt` of the server's sandbox mount namespace.
    pub mountns: Option<String>,
    /// Shell prefixes joining the project's cgroup leaves (empty without cgroups).
    pub join_dev: String,
    pub join_cmd: String,
    /// The compiled seccomp programs, handed to bwrap as fds 3, 4, ...
    pub seccomp: Vec<PathBuf>,
}

/// The bubblewrap options, NUL-separated, passed on stdin with `--args 0` so that host paths
/// never show in the sandbox's /proc/1/cmdline.
fn bwrap_args(spec: &SandboxSpec, share_net: bool, root: bool) -> Vec<String> {
    let ws = spec.workspace.display().to_string();
    let tmp = spec.tmp.display().to_string();
    let etc = spec.etc.display().to_string();
    let iso = &spec.iso;
    let mut a: Vec<String> = Vec::new();
    let mut push = |items: &[&str]| a.extend(items.iter().map(|s| (*s).to_owned()));
    // New PID, IPC, UTS and cgroup namespaces, and a mount namespace (always). As root no user
    // namespace: bwrap keeps host root's rights to set up the mounts, and the command itself
    // drops to the project's uid (see `SandboxSpec::command`). Without root, an unprivileged
    // user namespace does the same job. New user namespaces inside are refused by seccomp.
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
        "TMPDIR",
        "/tmp",
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
    for i in 0..spec.seccomp.len() {
        a.extend(["--add-seccomp-fd".to_owned(), (3 + i).to_string()]);
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
            "--bind",
            &tmp,
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

/// A path in single quotes for `sh` (the paths are the server's; a quote is refused at start).
fn sq(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', "'\\''"))
}

impl SandboxSpec {
    /// Builds the sandboxed command (not started).
    ///
    /// As root (the normal case) the chain is:
    /// `nsenter --net=<project ns> --mount=<sandbox mount ns>` -> `sh` (as root: joins the
    /// project's cgroup leaf, sets oom_score_adj 1000 for commands so that they, not the dev
    /// server, go first when memory runs out, opens the seccomp programs as fds 3 and 4) ->
    /// `bwrap` (namespaces, mounts; run as root so that it can bind paths under directories
    /// only root may enter; installs the seccomp programs last) -> inside: `prlimit` ->
    /// `setpriv` to the project's own uid with no capabilities, an empty bounding set and
    /// no-new-privs -> the command. Every process of the command therefore runs as an
    /// unprivileged host uid that owns nothing but its workspace.
    /// Without root, bwrap runs unprivileged in its own user namespace with a private network.
    pub(crate) fn command(&self, leaf: Leaf, argv: &[&str]) -> Result<Command, SandboxError> {
        let root = is_root();
        let mut opts = Vec::new();
        for arg in bwrap_args(self, root && self.netns.is_some(), root) {
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
            format!("--nproc={}", self.iso.max_processes),
            format!("--fsize={}", self.iso.max_file_bytes),
            format!("--nofile={}", self.iso.max_open_files),
            "--core=0".into(),
            "--".into(),
        ];
        if root {
            inner.extend([
                "/usr/bin/setpriv".into(),
                format!("--reuid={}", self.iso.uid),
                format!("--regid={}", self.iso.gid),
                "--clear-groups".into(),
                "--inh-caps=-all".into(),
                "--bounding-set=-all".into(),
                "--no-new-privs".into(),
                "--".into(),
            ]);
        }
        inner.extend(argv.iter().map(|a| (*a).to_owned()));

        let mut outer: Vec<String> = Vec::new();
        if root {
            let mut ns = Vec::new();
            if let Some(n) = &self.netns {
                ns.push(format!("--net={n}"));
            }
            if let Some(m) = &self.mountns {
                ns.push(format!("--mount={m}"));
            }
            if !ns.is_empty() {
                outer.push("/usr/bin/nsenter".into());
                outer.extend(ns);
                outer.push("--".into());
            }
        }
        let mut script = String::new();
        if root {
            script.push_str(match leaf {
                Leaf::Dev => &self.join_dev,
                Leaf::Cmd => &self.join_cmd,
            });
        }
        if leaf == Leaf::Cmd {
            script.push_str("echo 1000 > /proc/self/oom_score_adj && ");
        }
        if !self.seccomp.is_empty() {
            script.push_str("exec");
            for (i, p) in self.seccomp.iter().enumerate() {
                script.push_str(&format!(" {}<{}", 3 + i, sq(p)));
            }
            script.push_str(" && ");
        }
        script.push_str("exec \"$@\"");
        outer.extend(["/bin/sh".into(), "-c".into(), script, "sh".into()]);
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
            // Its own process group: signals to the server's group (Ctrl-C, a supervisor's
            // SIGTERM) reach the server, which stops the sandboxes in order; they end with it
            // anyway (--die-with-parent).
            .process_group(0)
            .kill_on_drop(true);
        Ok(cmd)
    }

    /// Runs `sh -c command` in the sandbox (the `cmd` leaf), streaming output chunks to
    /// `progress` (best effort).
    pub(crate) async fn run_shell(
        &self,
        command: &str,
        opts: &RunOptions,
        progress: Option<mpsc::Sender<String>>,
    ) -> Result<CommandResult, SandboxError> {
        let started = Instant::now();
        let mut cmd = self.command(Leaf::Cmd, &["/bin/sh", "-c", command])?;
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
            if let Err(e) = child.kill().await {
                tracing::warn!("killing a timed-out command: {e}");
            }
            None
        } else {
            match tokio::time::timeout_at(deadline, child.wait()).await {
                Ok(s) => s.ok(),
                Err(_) => {
                    timed_out = true;
                    if let Err(e) = child.kill().await {
                        tracing::warn!("killing a timed-out command: {e}");
                    }
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
}

fn send(progress: &Option<mpsc::Sender<String>>, bytes: &[u8]) {
    if let Some(tx) = progress {
        let _ = tx.try_send(String::from_utf8_lossy(bytes).into_owned());
    }
}
