//! Sandboxes on E2B: one E2B sandbox per live project, at most `max_sandboxes`.
//!
//! Each project has a slot (an async mutex) held while its sandbox is created, its sources
//! replaced or it is stopped, so one project never gets two E2B sandboxes. The live ones are
//! in a map that answers the cheap questions (preview state, log, count) without I/O; places
//! are reserved in it before a sandbox is created, so concurrent creates never pass the cap,
//! and a sandbox is chosen, checked unused and taken out of it under one lock when it is
//! stopped to make room (a handle given out meanwhile keeps it). A task per sandbox watches it:
//! probes the dev server, notices when E2B ended it, extends E2B's time to live while the
//! sandbox is used, and kills it once nobody has used it for `idle`.
//!
//! Every sandbox created is recorded before anyone can give up waiting for it (the create runs
//! in its own task), and every path that drops one kills it on E2B; what escapes anyway (a node
//! killed) ends by E2B's time to live, `idle` + 2 minutes at most.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use codeflux_protocol::Template;
use uuid::Uuid;

use super::api::Api;
use super::conn::{PortAddr, url_parts};
use super::envd::{ENVD_PORT, Envd};
use super::live::Live;
use super::sandbox::{E2bSandbox, HOME, envd_err, replace_sources};
use super::{E2bConfig, http_client};
use crate::{PreviewConn, PreviewState, Sandbox, SandboxError, SandboxProvider};

/// E2B's own time to live is kept this much longer than our idle limit (a dead node's
/// sandboxes end by themselves).
const TTL_MARGIN: Duration = Duration::from_secs(120);
/// How often a used sandbox's time to live is set again.
const EXTEND_EVERY: Duration = Duration::from_secs(60);
/// How long package installs may take after package.json changed.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(600);
/// How long killing a sandbox may take before we leave it to its time to live.
const KILL_TIMEOUT: Duration = Duration::from_secs(20);

type Slot = Arc<tokio::sync::Mutex<()>>;

#[derive(Default)]
struct Sandboxes {
    live: HashMap<Uuid, Arc<Live>>,
    /// Places reserved by creates under way.
    creating: usize,
}

struct Shared {
    cfg: E2bConfig,
    http: reqwest::Client,
    api: Api,
    slots: Mutex<HashMap<Uuid, Slot>>,
    map: Mutex<Sandboxes>,
}

impl Shared {
    fn with_map<R>(&self, f: impl FnOnce(&mut Sandboxes) -> R) -> Option<R> {
        match self.map.lock() {
            Ok(mut m) => Some(f(&mut m)),
            Err(_) => {
                tracing::error!("the E2B sandbox map is poisoned");
                None
            }
        }
    }

    /// Takes `live` out of the map if it is still the project's entry.
    fn forget(&self, live: &Arc<Live>) {
        self.with_map(|m| {
            if m.live
                .get(&live.project)
                .is_some_and(|l| Arc::ptr_eq(l, live))
            {
                m.live.remove(&live.project);
            }
        });
    }
}

/// A place reserved for a sandbox being created; given back when dropped unless the sandbox
/// took it.
struct Reservation {
    shared: Arc<Shared>,
    taken: bool,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.taken {
            self.shared
                .with_map(|m| m.creating = m.creating.saturating_sub(1));
        }
    }
}

/// Sandboxes on E2B.
#[derive(Clone)]
pub struct E2bProvider(Arc<Shared>);

impl E2bProvider {
    pub fn new(cfg: E2bConfig) -> Result<Self, SandboxError> {
        if cfg.api_key.trim().is_empty() {
            return Err(SandboxError::Setup(
                "CODEFLUX_SANDBOX=e2b needs E2B_API_KEY".into(),
            ));
        }
        if let Some(u) = &cfg.sandbox_url {
            url_parts(u).map_err(|e| SandboxError::Setup(format!("E2B_SANDBOX_URL {e}")))?;
        }
        url_parts(&cfg.api_url).map_err(|e| SandboxError::Setup(format!("E2B_API_URL {e}")))?;
        let http = http_client().map_err(SandboxError::Setup)?;
        let api = Api::new(http.clone(), &cfg.api_url, &cfg.api_key);
        Ok(Self(Arc::new(Shared {
            cfg,
            http,
            api,
            slots: Mutex::new(HashMap::new()),
            map: Mutex::new(Sandboxes::default()),
        })))
    }

    fn slot(&self, project: Uuid) -> Slot {
        match self.0.slots.lock() {
            Ok(mut s) => s.entry(project).or_default().clone(),
            // A poisoned map still hands out a fresh slot (never a panic).
            Err(_) => Slot::default(),
        }
    }

    fn live(&self, project: Uuid) -> Option<Arc<Live>> {
        self.0
            .with_map(|m| m.live.get(&project).cloned())
            .flatten()
            .filter(|l| !l.is_stopped())
    }

    fn preview_url_of(&self, project: Uuid) -> String {
        self.0.cfg.preview_url.replace("{id}", &project.to_string())
    }

    /// A handle on the project's live sandbox, created when there is none; with `files`, its
    /// sources made exactly those. Call with the project's slot held.
    async fn ensure(
        &self,
        project: Uuid,
        template: Template,
        files: Option<&BTreeMap<String, String>>,
    ) -> Result<E2bSandbox, SandboxError> {
        // The handle is taken under the map's lock: from then on no eviction takes it.
        let found = self
            .0
            .with_map(|m| {
                m.live
                    .get(&project)
                    .filter(|l| !l.is_stopped() && l.template == template)
                    .map(|l| self.handle(l))
            })
            .flatten();
        let (sandbox, fresh) = match found {
            Some(s) => (s, false),
            None => {
                // None, or one of the project's former template: a new one.
                self.kill(project).await;
                let reservation = self.make_room().await?;
                let shared = self.0.clone();
                // Its own task: the sandbox is recorded even if our caller gives up waiting.
                let live = tokio::spawn(create(shared, project, template, reservation))
                    .await
                    .map_err(|e| SandboxError::Setup(format!("creating the sandbox: {e}")))??;
                (self.handle(&live), true)
            }
        };
        if let Some(files) = files {
            let applied = match replace_sources(&sandbox.live, files).await {
                Ok(true) => install(&sandbox.live).await,
                Ok(false) => Ok(()),
                Err(e) => Err(e),
            };
            if let Err(e) = applied {
                if fresh {
                    // Never left serving the template's files in place of the project's.
                    self.kill(project).await;
                }
                return Err(e);
            }
        }
        Ok(sandbox)
    }

    fn handle(&self, live: &Arc<Live>) -> E2bSandbox {
        E2bSandbox::new(
            live.clone(),
            self.preview_url_of(live.project),
            self.0.http.clone(),
        )
    }

    /// Reserves a place: past the cap, takes the least recently used sandbox nobody uses out
    /// of the map (under the same lock) and kills it; Busy when there is none.
    async fn make_room(&self) -> Result<Reservation, SandboxError> {
        let max = self.0.cfg.max_sandboxes;
        let decided = self
            .0
            .with_map(|m| {
                if m.live.len() + m.creating < max {
                    m.creating += 1;
                    return Ok(None);
                }
                let victim = m
                    .live
                    .values()
                    .filter(|l| !l.in_use())
                    .max_by_key(|l| l.idle_for())
                    .map(|l| l.project);
                match victim.and_then(|p| m.live.remove(&p)) {
                    Some(v) => {
                        m.creating += 1;
                        Ok(Some(v))
                    }
                    None => Err(()),
                }
            })
            .unwrap_or(Err(()));
        match decided {
            Ok(victim) => {
                let reservation = Reservation {
                    shared: self.0.clone(),
                    taken: false,
                };
                if let Some(v) = victim {
                    tracing::info!(project = %v.project, "stopping an unused E2B sandbox to make room");
                    kill_live(&self.0.api, &v).await;
                }
                Ok(reservation)
            }
            Err(()) => Err(SandboxError::Busy(format!(
                "all {max} E2B sandboxes this server may run are in use; try again in a minute"
            ))),
        }
    }

    /// Forgets the project's sandbox and kills it on E2B.
    async fn kill(&self, project: Uuid) {
        if let Some(Some(live)) = self.0.with_map(|m| m.live.remove(&project)) {
            kill_live(&self.0.api, &live).await;
        }
    }
}

/// Creates the project's E2B sandbox and records it (replacing `reservation`).
async fn create(
    shared: Arc<Shared>,
    project: Uuid,
    template: Template,
    mut reservation: Reservation,
) -> Result<Arc<Live>, SandboxError> {
    let cfg = &shared.cfg;
    let t = cfg.template(template);
    let project_s = project.to_string();
    let info = shared
        .api
        .create(
            &t.name,
            cfg.idle + TTL_MARGIN,
            &[("codeflux_project", project_s.as_str())],
        )
        .await
        .map_err(|e| SandboxError::Setup(e.to_string()))?;
    let domain = info.domain.clone().unwrap_or_else(|| cfg.domain.clone());
    let addrs = PortAddr::new(cfg, &domain, &info.sandbox_id, ENVD_PORT, None).and_then(|e| {
        PortAddr::new(
            cfg,
            &domain,
            &info.sandbox_id,
            t.port,
            info.traffic_access_token.clone(),
        )
        .map(|p| (e, p))
    });
    let (envd_addr, port) = match addrs {
        Ok(a) => a,
        Err(e) => {
            if let Err(k) = shared.api.kill(&info.sandbox_id).await {
                tracing::warn!(sandbox = %info.sandbox_id, error = %k, "stopping an E2B sandbox failed");
            }
            return Err(SandboxError::Setup(e));
        }
    };
    let envd = Envd::new(
        shared.http.clone(),
        &envd_addr.base_url(),
        &info.sandbox_id,
        info.envd_access_token.clone(),
    );
    let live = Arc::new(Live::new(
        project,
        template,
        info.sandbox_id.clone(),
        envd,
        port,
        t.start_cmd.clone(),
    ));
    // The sandbox takes its reserved place.
    let replaced = shared
        .with_map(|m| {
            let old = m.live.insert(project, live.clone());
            m.creating = m.creating.saturating_sub(1);
            old
        })
        .flatten();
    reservation.taken = true;
    if let Some(old) = replaced {
        kill_live(&shared.api, &old).await;
    }
    tracing::info!(%project, sandbox = %info.sandbox_id, template = %t.name, "E2B sandbox started");
    tokio::spawn(watch(Arc::downgrade(&shared), live.clone()));
    Ok(live)
}

async fn kill_live(api: &Api, live: &Live) {
    live.stop();
    match tokio::time::timeout(KILL_TIMEOUT, api.kill(&live.sandbox_id)).await {
        Ok(Ok(_)) => {
            tracing::info!(project = %live.project, sandbox = %live.sandbox_id, "E2B sandbox stopped")
        }
        // Its time to live ends it anyway.
        Ok(Err(e)) => {
            tracing::warn!(project = %live.project, sandbox = %live.sandbox_id, error = %e, "stopping an E2B sandbox failed")
        }
        Err(_) => {
            tracing::warn!(project = %live.project, sandbox = %live.sandbox_id, "stopping an E2B sandbox timed out")
        }
    }
}

/// Installs the packages after package.json changed.
async fn install(live: &Live) -> Result<(), SandboxError> {
    let done = live
        .envd
        .run(
            "npm install --no-audit --no-fund",
            HOME,
            INSTALL_TIMEOUT,
            16 * 1024,
            None,
        )
        .await
        .map_err(envd_err)?;
    if done.exit_code != 0 {
        let tail: String = done.output.chars().rev().take(1500).collect();
        return Err(SandboxError::Setup(format!(
            "npm install failed: {}",
            tail.chars().rev().collect::<String>()
        )));
    }
    Ok(())
}

/// Watches one sandbox until it is stopped: its dev server, whether E2B still runs it, its
/// time to live, its idleness.
async fn watch(shared: Weak<Shared>, live: Arc<Live>) {
    loop {
        let Some(s) = shared.upgrade() else { return };
        if live.is_stopped() {
            return;
        }
        let answers = live.probe(&s.http).await;
        if answers == Some(false) && live.envd.health().await == Some(false) {
            // E2B ended it (its time ran out, or it was killed elsewhere): the next use
            // starts a new one from the server's records.
            tracing::warn!(project = %live.project, sandbox = %live.sandbox_id, "the E2B sandbox is gone");
            live.stop();
            s.forget(&live);
            return;
        }
        if let Some(a) = answers {
            live.after_probe(a);
        }
        if live.in_use() {
            live.touch();
        } else if live.idle_for() >= s.cfg.idle {
            tracing::info!(project = %live.project, "E2B sandbox idle; stopping it");
            s.forget(&live);
            if !live.is_stopped() {
                kill_live(&s.api, &live).await;
            }
            return;
        }
        if live.wants_extending(EXTEND_EVERY)
            && let Ok(false) = s
                .api
                .set_timeout(&live.sandbox_id, s.cfg.idle + TTL_MARGIN)
                .await
        {
            tracing::warn!(project = %live.project, sandbox = %live.sandbox_id, "the E2B sandbox is gone");
            live.stop();
            s.forget(&live);
            return;
        }
        drop(s);
        let pause = if answers == Some(true) {
            Duration::from_secs(2)
        } else {
            Duration::from_millis(500)
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = live.wake.notified() => {}
        }
    }
}

#[async_trait]
impl SandboxProvider for E2bProvider {
    async fn open(
        &self,
        project_id: Uuid,
        template: Template,
        files: Option<&BTreeMap<String, String>>,
    ) -> Result<Arc<dyn Sandbox>, SandboxError> {
        let slot = self.slot(project_id);
        let _held = slot.lock().await;
        Ok(Arc::new(self.ensure(project_id, template, files).await?))
    }

    async fn stop(&self, project_id: Uuid) {
        let slot = self.slot(project_id);
        let _held = slot.lock().await;
        self.kill(project_id).await;
    }

    async fn delete(&self, project_id: Uuid) -> Result<(), SandboxError> {
        self.stop(project_id).await;
        if let Ok(mut s) = self.0.slots.lock() {
            s.remove(&project_id);
        }
        Ok(())
    }

    fn preview_url(&self, project_id: Uuid) -> String {
        self.preview_url_of(project_id)
    }

    fn preview_state(&self, project_id: Uuid) -> PreviewState {
        self.live(project_id)
            .map_or(PreviewState::Stopped, |l| l.preview_state())
    }

    async fn start_preview(
        &self,
        project_id: Uuid,
        template: Template,
        files: Option<&BTreeMap<String, String>>,
    ) -> Result<(), SandboxError> {
        if let Some(live) = self.live(project_id) {
            live.touch();
            live.wake.notify_waiters();
            return Ok(());
        }
        let slot = self.slot(project_id);
        let _held = slot.lock().await;
        self.ensure(project_id, template, files).await?;
        Ok(())
    }

    async fn show_files(
        &self,
        project_id: Uuid,
        template: Template,
        files: &BTreeMap<String, String>,
    ) -> Result<(), SandboxError> {
        let slot = self.slot(project_id);
        let _held = slot.lock().await;
        self.ensure(project_id, template, Some(files)).await?;
        Ok(())
    }

    async fn connect_preview(&self, project_id: Uuid) -> std::io::Result<PreviewConn> {
        let live = self.live(project_id).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                "the project's sandbox is not running",
            )
        })?;
        let hold: Box<dyn Send + Sync> = Box::new(live.hold());
        live.port.connect(Some(hold)).await
    }

    fn dev_server_log(&self, project_id: Uuid) -> Vec<String> {
        self.live(project_id)
            .map(|l| l.log_lines())
            .unwrap_or_default()
    }

    fn live_sandboxes(&self) -> usize {
        self.0.with_map(|m| m.live.len()).unwrap_or(0)
    }

    async fn stop_all(&self) {
        let all: Vec<Arc<Live>> = self
            .0
            .with_map(|m| m.live.drain().map(|(_, l)| l).collect())
            .unwrap_or_default();
        for live in all {
            kill_live(&self.0.api, &live).await;
        }
    }
}
