//! Keeps a project's dev server running: install packages when package.json changed, start it,
//! wait until it answers, restart it when it stops (with a growing back-off), and after five
//! stops in a row give up for a while with the reason (its last output). The next preview
//! request or run starts it again once that while has passed: the preview heals by itself.
//!
//! Its output is kept in a [`LogRing`] (bounded in bytes) and read at most ~8 MiB/s: a dev
//! server that prints without end (or without newlines) costs the server neither memory nor
//! much CPU; it only blocks itself on its full pipe.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

use super::dev_server;
use super::runtime::Runtime;
use crate::RunOptions;
use crate::cgroup::Leaf;
use crate::logring::LogRing;
use crate::net::NetNsHandle;

/// Bytes of dev-server output kept.
const LOG_BYTES: usize = 64 * 1024;
/// Output read per quarter second at most (~8 MiB/s).
const READ_BUDGET: usize = 2 * 1024 * 1024;
/// Stops in a row after which the supervisor gives up until the back-off has passed.
const GIVE_UP_AFTER: u32 = 5;
/// A dev server that answered for this long counts as having run well.
const RAN_WELL: Duration = Duration::from_secs(60);

#[derive(Clone, Debug, Default, PartialEq)]
pub(super) enum Phase {
    #[default]
    Stopped,
    Installing,
    Starting,
    Ready,
    Failed(String),
}

pub(super) struct DevState {
    pub phase: Phase,
    pub task: Option<JoinHandle<()>>,
    pub log: LogRing,
    /// Stops in a row (reset after it ran well).
    pub failures: u32,
    /// When a given-up dev server may be started again.
    pub retry_at: Option<Instant>,
    /// Why it stopped last time (shown while it restarts).
    pub last_stop: Option<String>,
}

impl Default for DevState {
    fn default() -> Self {
        Self {
            phase: Phase::Stopped,
            task: None,
            log: LogRing::new(LOG_BYTES),
            failures: 0,
            retry_at: None,
            last_stop: None,
        }
    }
}

impl Runtime {
    pub(super) fn set_phase(&self, phase: Phase) {
        if let Ok(mut d) = self.dev.lock() {
            d.phase = phase;
        }
    }

    pub(super) fn log_note(&self, line: &str) {
        if let Ok(mut d) = self.dev.lock() {
            d.log.note(line);
        }
    }

    /// The dev server's recent output, as lines.
    pub(super) fn log_lines(&self) -> Vec<String> {
        self.dev.lock().map(|d| d.log.lines()).unwrap_or_default()
    }

    /// The dev server's output lines after it had printed `before` bytes.
    pub(super) fn log_since(&self, before: u64) -> Vec<String> {
        self.dev
            .lock()
            .map(|d| d.log.since(before))
            .unwrap_or_default()
    }

    /// Starts the dev server now if it is not running, even within its back-off (a check
    /// wants to know whether it starts).
    pub(super) fn ensure_dev_server_now(self: &Arc<Self>) {
        if let Ok(mut d) = self.dev.lock()
            && matches!(d.phase, Phase::Failed(_))
        {
            d.retry_at = None;
        }
        self.ensure_dev_server();
    }

    /// (bytes of output kept, bytes of output read in all).
    pub(super) fn log_bytes(&self) -> (usize, u64) {
        self.dev
            .lock()
            .map(|d| (d.log.len(), d.log.total()))
            .unwrap_or_default()
    }

    fn log_tail(&self, n: usize) -> String {
        self.dev
            .lock()
            .map(|d| d.log.tail(n).join("\n"))
            .unwrap_or_default()
    }

    /// Starts the dev server supervisor unless it runs, the sandbox has no network, or it gave
    /// up less than its back-off ago.
    pub(super) fn ensure_dev_server(self: &Arc<Self>) {
        if self.netns().is_none() || !self.dev_enabled || self.is_stopped() {
            return;
        }
        let Ok(mut d) = self.dev.lock() else { return };
        if d.task.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        if matches!(d.phase, Phase::Failed(_)) && d.retry_at.is_some_and(|t| Instant::now() < t) {
            return;
        }
        d.phase = Phase::Starting;
        let weak = Arc::downgrade(self);
        d.task = Some(tokio::spawn(async move { supervise(weak).await }));
    }

    /// Installs packages when package.json differs from what was installed last.
    pub(super) async fn install_if_needed(&self) -> Result<(), String> {
        let pkg = match self.blocking(|ws| ws.read("package.json")).await {
            Ok(s) => s,
            Err(crate::SandboxError::File(crate::FileError::NotFound(_))) => String::new(),
            Err(e) => {
                // A link, a FIFO, a binary: nothing to install from; the dev server may still run.
                self.log_note(&format!(
                    "[codeflux] package.json was not read ({e}); no packages installed"
                ));
                String::new()
            }
        };
        let installed = self.installed.lock().map(|i| i.clone()).unwrap_or_default();
        if pkg.is_empty() || pkg == installed {
            return Ok(());
        }
        let before = self.dev.lock().map(|d| d.phase.clone()).unwrap_or_default();
        self.set_phase(Phase::Installing);
        let r = self
            .spec
            .run_shell(
                "npm install --no-audit --no-fund --prefer-offline --loglevel=error",
                &RunOptions {
                    timeout: Duration::from_secs(600),
                    output_cap: 16 * 1024,
                },
                None,
            )
            .await
            .map_err(|e| e.to_string())?;
        self.log_note(&format!("$ npm install\n{}", r.output.trim_end()));
        if r.exit_code != Some(0) {
            self.set_phase(before);
            return Err(format!(
                "npm install failed: {}",
                r.output
                    .lines()
                    .rev()
                    .take(5)
                    .collect::<Vec<_>>()
                    .join(" | ")
            ));
        }
        if let Ok(mut i) = self.installed.lock() {
            *i = pkg;
        }
        self.set_phase(before);
        Ok(())
    }

    /// Records a stop; returns the back-off before the next start, or None to give up.
    fn record_stop(&self, why: String, ran_well: bool) -> Option<Duration> {
        let Ok(mut d) = self.dev.lock() else {
            return None;
        };
        d.failures = if ran_well { 1 } else { d.failures + 1 };
        d.last_stop = Some(why.clone());
        if d.failures >= GIVE_UP_AFTER {
            let over = d.failures - GIVE_UP_AFTER;
            let wait = Duration::from_secs((10u64 << over.min(4)).min(120));
            d.retry_at = Some(Instant::now() + wait);
            d.phase = Phase::Failed(format!(
                "The dev server keeps stopping ({} times in a row); it is started again on the next visit after {} s. {why}",
                d.failures,
                wait.as_secs()
            ));
            return None;
        }
        d.phase = Phase::Starting;
        Some(Duration::from_millis(500u64 << (d.failures - 1).min(4)))
    }
}

async fn supervise(weak: Weak<Runtime>) {
    loop {
        let Some(rt) = weak.upgrade() else { return };
        if rt.is_stopped() {
            return;
        }
        if let Err(why) = rt.install_if_needed().await {
            if let Ok(mut d) = rt.dev.lock() {
                d.failures += 1;
                d.retry_at = Some(Instant::now() + Duration::from_secs(10));
                let tail = d.log.tail(12).join("\n");
                d.phase = Phase::Failed(format!("{why}\n{tail}"));
            }
            return;
        }
        rt.set_phase(Phase::Starting);
        let (_, command) = dev_server(rt.template);
        let mut child = match rt
            .spec
            .command(Leaf::Dev, &["/bin/sh", "-c", command])
            .and_then(|mut c| {
                c.spawn().map_err(|e| {
                    crate::SandboxError::Spawn(format!("starting the dev server: {e}"))
                })
            }) {
            Ok(c) => c,
            Err(e) => {
                rt.set_phase(Phase::Failed(e.to_string()));
                if let Ok(mut d) = rt.dev.lock() {
                    d.retry_at = Some(Instant::now() + Duration::from_secs(10));
                }
                return;
            }
        };
        if let Some(out) = child.stdout.take() {
            tokio::spawn(pump(out, weak.clone()));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(pump(err, weak.clone()));
        }
        let started = Instant::now();
        let mut ready_at = None;
        let ns = rt.netns().cloned();
        let port = rt.dev_port;
        drop(rt);
        while started.elapsed() < Duration::from_secs(120) {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            if let Some(ns) = &ns
                && answers_http(ns, port).await
            {
                ready_at = Some(Instant::now());
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if ready_at.is_some() {
            let Some(rt) = weak.upgrade() else { return };
            tracing::info!(project = %rt.id, secs = started.elapsed().as_secs_f32(), "dev server ready");
            rt.set_phase(Phase::Ready);
        }
        let status = child.wait().await;
        let Some(rt) = weak.upgrade() else { return };
        if rt.is_stopped() {
            return;
        }
        let what = match &status {
            Ok(s) => match (s.code(), std::os::unix::process::ExitStatusExt::signal(s)) {
                (Some(c), _) => format!("exit code {c}"),
                (None, Some(9)) => "killed (SIGKILL; out of memory?)".to_owned(),
                (None, Some(sig)) => format!("killed by signal {sig}"),
                _ => "stopped".to_owned(),
            },
            Err(e) => format!("lost ({e})"),
        };
        rt.log_note(&format!("[codeflux] the dev server stopped: {what}"));
        tracing::warn!(project = %rt.id, %what, "dev server stopped");
        let ran_well = ready_at.is_some_and(|t| t.elapsed() >= RAN_WELL);
        let why = format!("Its last output:\n{}", rt.log_tail(12));
        let Some(backoff) = rt.record_stop(why, ran_well) else {
            return;
        };
        drop(rt);
        tokio::time::sleep(backoff).await;
    }
}

/// Reads a dev server's output into its log ring, at most [`READ_BUDGET`] per quarter second.
async fn pump(mut out: impl AsyncRead + Unpin, weak: Weak<Runtime>) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut window = Instant::now();
    let mut used = 0usize;
    loop {
        let n = match out.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        {
            let Some(rt) = weak.upgrade() else { return };
            if let Ok(mut d) = rt.dev.lock() {
                d.log.push(&buf[..n]);
            }
        }
        used += n;
        if used >= READ_BUDGET {
            let spent = window.elapsed();
            if spent < Duration::from_millis(250) {
                tokio::time::sleep(Duration::from_millis(250) - spent).await;
            }
            window = Instant::now();
            used = 0;
        }
    }
}

/// Whether something answers HTTP on the port inside the namespace.
pub(super) async fn answers_http(ns: &NetNsHandle, port: u16) -> bool {
    let Ok(mut s) = ns.connect(port, Duration::from_millis(500)).await else {
        return false;
    };
    let req = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    if s.write_all(req).await.is_err() {
        return false;
    }
    let mut buf = [0u8; 12];
    matches!(
        tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf)).await,
        Ok(Ok(n)) if n >= 5 && buf.starts_with(b"HTTP/")
    )
}
