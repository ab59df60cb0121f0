//! One live E2B sandbox: its envd, how its dev server port is reached, when it was last used,
//! and its dev server's state.
//!
//! The template's start command runs the dev server when E2B builds the template, so a new
//! sandbox (resumed from that snapshot) usually serves at once. The dev server is probed
//! through E2B's edge (which answers 502 for a port nothing listens on); when it does not
//! answer for a while and nothing we started is starting it, the template's start command is
//! run again, and its output kept (bounded, in bytes) for the dev server log.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use codeflux_protocol::Template;
use tokio::sync::{Notify, mpsc};
use uuid::Uuid;

use super::conn::PortAddr;
use super::envd::Envd;
use crate::logring::LogRing;
use crate::{PreviewState, check};
use codeflux_protocol::CheckItem;

/// How long a new sandbox's own dev server (from the template's snapshot) may take to answer
/// before we start one.
const FIRST_ANSWER: Duration = Duration::from_secs(20);
/// A dev server that stopped answering is started again after this long.
const DOWN_FOR: Duration = Duration::from_secs(3);
/// After the dev server we started exited, we wait this long before starting it again.
const BACKOFF: Duration = Duration::from_secs(10);
/// Bytes of dev server output kept.
const LOG_BYTES: usize = 64 * 1024;
/// How long our dev server process may run (envd ends it then; we start it again).
const DEV_LIFETIME: Duration = Duration::from_secs(24 * 3600);

enum Dev {
    /// Not answering yet (since the sandbox started or since it last answered).
    Waiting {
        since: Instant,
    },
    /// The start command we ran is under way.
    Starting,
    Ready,
    /// The start command we ran ended; the text says why.
    Exited {
        at: Instant,
        why: String,
    },
}

struct State {
    last_used: Instant,
    extended: Instant,
    dev: Dev,
    log: LogRing,
    dev_task: Option<tokio::task::JoinHandle<()>>,
    /// The template's own dev server had its chance (it answered once, or we started ours).
    own_turn: bool,
}

/// See [`Live::hold`].
pub(super) struct Hold {
    _count: Arc<()>,
    live: std::sync::Weak<Live>,
}

impl Drop for Hold {
    fn drop(&mut self) {
        if let Some(live) = self.live.upgrade() {
            live.touch();
        }
    }
}

pub(super) struct Live {
    pub project: Uuid,
    pub template: Template,
    pub sandbox_id: String,
    pub envd: Envd,
    pub port: PortAddr,
    start_cmd: String,
    /// Cloned by every handle that uses the sandbox (a run's sandbox, an open preview).
    holds: Arc<()>,
    state: Mutex<State>,
    stopped: AtomicBool,
    pub wake: Notify,
}

impl Live {
    pub fn new(
        project: Uuid,
        template: Template,
        sandbox_id: String,
        envd: Envd,
        port: PortAddr,
        start_cmd: String,
    ) -> Self {
        let now = Instant::now();
        Self {
            project,
            template,
            sandbox_id,
            envd,
            port,
            start_cmd,
            holds: Arc::new(()),
            state: Mutex::new(State {
                last_used: now,
                extended: now,
                dev: Dev::Waiting { since: now },
                log: LogRing::new(LOG_BYTES),
                dev_task: None,
                own_turn: false,
            }),
            stopped: AtomicBool::new(false),
            wake: Notify::new(),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> Option<R> {
        match self.state.lock() {
            Ok(mut s) => Some(f(&mut s)),
            Err(_) => {
                tracing::error!(project = %self.project, "an E2B sandbox's state lock is poisoned");
                None
            }
        }
    }

    /// Someone used the sandbox now.
    pub fn touch(&self) {
        self.with(|s| s.last_used = Instant::now());
    }

    /// A token that keeps the sandbox counted as in use while it lives; letting it go counts
    /// as a use (a preview connection open for an hour is not "idle for an hour" when it
    /// closes).
    pub fn hold(self: &Arc<Self>) -> Hold {
        self.touch();
        Hold {
            _count: self.holds.clone(),
            live: Arc::downgrade(self),
        }
    }

    pub fn in_use(&self) -> bool {
        Arc::strong_count(&self.holds) > 1
    }

    pub fn idle_for(&self) -> Duration {
        self.with(|s| s.last_used.elapsed()).unwrap_or_default()
    }

    /// True once per `every` while the sandbox was used since its time to live was last set.
    pub fn wants_extending(&self, every: Duration) -> bool {
        self.with(|s| {
            if s.extended.elapsed() >= every && s.last_used > s.extended {
                s.extended = Instant::now();
                true
            } else {
                false
            }
        })
        .unwrap_or(false)
    }

    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        if let Some(Some(t)) = self.with(|s| s.dev_task.take()) {
            t.abort();
        }
        self.wake.notify_waiters();
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    pub fn preview_state(&self) -> PreviewState {
        self.with(|s| match &s.dev {
            Dev::Ready => PreviewState::Ready,
            Dev::Waiting { .. } | Dev::Starting => {
                PreviewState::Starting("starting the dev server on E2B".into())
            }
            Dev::Exited { why, .. } => PreviewState::Failed(why.clone()),
        })
        .unwrap_or(PreviewState::Stopped)
    }

    pub fn log_lines(&self) -> Vec<String> {
        self.with(|s| s.log.lines()).unwrap_or_default()
    }

    /// GET / of the dev server through E2B's edge.
    async fn get_page(
        &self,
        http: &reqwest::Client,
        timeout: Duration,
    ) -> reqwest::Result<reqwest::Response> {
        let mut req = http
            .get(format!("{}/", self.port.base_url()))
            .header("host", &self.port.host)
            .header("accept", "text/html")
            .timeout(timeout);
        for (k, v) in self.port.routing_headers() {
            req = req.header(k, v);
        }
        req.send().await
    }

    /// Whether the dev server answers through E2B's edge: Some(false) only when the edge says
    /// nothing listens (502); None when it cannot be told now (a slow compile, a network
    /// failure), which changes nothing.
    pub async fn probe(&self, http: &reqwest::Client) -> Option<bool> {
        match self.get_page(http, Duration::from_secs(20)).await {
            Ok(res) => Some(res.status().as_u16() != 502),
            Err(_) => None,
        }
    }

    /// The check's "dev server" item: it must run (waited for up to 90 s) and answer the page
    /// without an error status.
    pub async fn dev_check(&self, http: &reqwest::Client) -> CheckItem {
        let t0 = Instant::now();
        loop {
            match self.preview_state() {
                PreviewState::Ready => break,
                PreviewState::Failed(why) => {
                    return check::failed(
                        "dev server",
                        &format!("the dev server does not run: {why}"),
                        ms(t0),
                    );
                }
                _ if t0.elapsed() > Duration::from_secs(90) => {
                    return check::failed(
                        "dev server",
                        "the dev server did not answer within 90 s",
                        ms(t0),
                    );
                }
                _ => {
                    self.wake.notify_waiters();
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        }
        match self.get_page(http, Duration::from_secs(60)).await {
            Ok(mut res) if res.status().as_u16() >= 400 => {
                let status = res.status().as_u16();
                // At most 2 KiB of the answer (the error text of the dev server).
                let mut body = Vec::new();
                while body.len() < 2048 {
                    match res.chunk().await {
                        Ok(Some(c)) => body.extend_from_slice(&c),
                        _ => break,
                    }
                }
                body.truncate(2048);
                check::failed(
                    "dev server",
                    &format!(
                        "the page answered {status}: {}",
                        String::from_utf8_lossy(&body)
                    ),
                    ms(t0),
                )
            }
            Ok(_) => check::parse_dev_log(&[], ms(t0)),
            Err(e) => check::failed(
                "dev server",
                &format!("the page did not load: {}", e.without_url()),
                ms(t0),
            ),
        }
    }

    /// Takes a probe's answer; starts the dev server when it has been down long enough.
    pub fn after_probe(self: &Arc<Self>, answers: bool) {
        let start = self
            .with(|s| {
                let ours_running = s.dev_task.as_ref().is_some_and(|t| !t.is_finished());
                if answers {
                    s.dev = Dev::Ready;
                    s.own_turn = true;
                    return false;
                }
                match &s.dev {
                    Dev::Ready => {
                        s.dev = Dev::Waiting {
                            since: Instant::now(),
                        };
                        false
                    }
                    Dev::Waiting { since } => {
                        let patience = if s.own_turn { DOWN_FOR } else { FIRST_ANSWER };
                        !ours_running && since.elapsed() >= patience
                    }
                    Dev::Starting => false,
                    Dev::Exited { at, .. } => at.elapsed() >= BACKOFF,
                }
            })
            .unwrap_or(false);
        if start {
            self.start_dev();
        }
    }

    /// Runs the template's start command in the background, its output into the log.
    fn start_dev(self: &Arc<Self>) {
        // Starting before the task exists: a task that ends at once leaves its Exited.
        self.with(|s| {
            s.log
                .note(&format!("$ {} (starting the dev server)", self.start_cmd));
            s.dev = Dev::Starting;
            s.own_turn = true;
        });
        let me = self.clone();
        let (tx, mut rx) = mpsc::channel::<String>(64);
        let task = tokio::spawn(async move {
            let logger = {
                let me = me.clone();
                tokio::spawn(async move {
                    while let Some(chunk) = rx.recv().await {
                        me.with(|s| s.log.push(chunk.as_bytes()));
                    }
                })
            };
            let ended = me
                .envd
                .run(&me.start_cmd, "/home/user", DEV_LIFETIME, 4096, Some(tx))
                .await;
            // The output has all arrived once the sender is gone.
            if let Err(e) = logger.await {
                tracing::debug!("the dev server's log task ended: {e}");
            }
            let why = match ended {
                Ok(f) if f.timed_out => "the dev server ran for a day; starting it again".into(),
                Ok(f) => format!(
                    "the dev server exited (code {}): {}",
                    f.exit_code,
                    me.log_lines()
                        .iter()
                        .rev()
                        .take(8)
                        .rev()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join("\n")
                ),
                Err(e) => e.to_string(),
            };
            tracing::info!(project = %me.project, sandbox = %me.sandbox_id, %why, "E2B dev server ended");
            me.with(|s| {
                s.log.note(&why);
                s.dev = Dev::Exited {
                    at: Instant::now(),
                    why,
                }
            });
        });
        self.with(|s| {
            if let Some(old) = s.dev_task.replace(task) {
                old.abort();
            }
        });
    }
}

fn ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}
