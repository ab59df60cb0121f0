//! Sandboxes on E2B: one E2B sandbox per live project, at most `max_sandboxes`.
//!
//! Each project has a slot (an async mutex) held while its sandbox is created, its sources
//! replaced or it is stopped, so one project never gets two E2B sandboxes. The live ones are
//! in a map that answers the cheap questions (preview state, log, count) without I/O. A task
//! per sandbox watches it: probes the dev server, extends E2B's time to live while the
//! sandbox is used, and kills it once nobody has used it for `idle`.

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

type Slot = Arc<tokio::sync::Mutex<()>>;

struct Shared {
    cfg: E2bConfig,
    http: reqwest::Client,
    api: Api,
    slots: Mutex<HashMap<Uuid, Slot>>,
    live: Mutex<HashMap<Uuid, Arc<Live>>>,
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
            live: Mutex::new(HashMap::new()),
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
            .live
            .lock()
            .ok()
            .and_then(|m| m.get(&project).cloned())
            .filter(|l| !l.is_stopped())
    }

    fn preview_url_of(&self, project: Uuid) -> String {
        self.0.cfg.preview_url.replace("{id}", &project.to_string())
    }

    /// The project's live sandbox, created when there is none; with `files`, its sources
    /// made exactly those. Call with the project's slot held.
    async fn ensure(
        &self,
        project: Uuid,
        template: Template,
        files: Option<&BTreeMap<String, String>>,
    ) -> Result<Arc<Live>, SandboxError> {
        let live = match self.live(project) {
            Some(l) if l.template == template => l,
            Some(_) => {
                // The project's template changed under it: a sandbox of the other one.
                self.kill(project).await;
                self.create(project, template).await?
            }
            None => self.create(project, template).await?,
        };
        live.touch();
        if let Some(files) = files
            && replace_sources(&live, files).await?
        {
            install(&live).await?;
        }
        Ok(live)
    }

    async fn create(&self, project: Uuid, template: Template) -> Result<Arc<Live>, SandboxError> {
        self.make_room().await?;
        let cfg = &self.0.cfg;
        let t = cfg.template(template);
        let project_s = project.to_string();
        let info = self
            .0
            .api
            .create(
                &t.name,
                cfg.idle + TTL_MARGIN,
                &[("codeflux_project", project_s.as_str())],
            )
            .await
            .map_err(|e| SandboxError::Setup(e.to_string()))?;
        let domain = info.domain.clone().unwrap_or_else(|| cfg.domain.clone());
        let envd_addr = PortAddr::new(cfg, &domain, &info.sandbox_id, ENVD_PORT)
            .map_err(SandboxError::Setup)?;
        let port =
            PortAddr::new(cfg, &domain, &info.sandbox_id, t.port).map_err(SandboxError::Setup)?;
        let envd = Envd::new(
            self.0.http.clone(),
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
        if let Ok(mut m) = self.0.live.lock() {
            m.insert(project, live.clone());
        }
        tracing::info!(%project, sandbox = %info.sandbox_id, template = %t.name, "E2B sandbox started");
        tokio::spawn(watch(Arc::downgrade(&self.0), live.clone()));
        Ok(live)
    }

    /// Past the cap, kills the least recently used sandbox nobody uses; Busy when there is none.
    async fn make_room(&self) -> Result<(), SandboxError> {
        let victim = {
            let Ok(m) = self.0.live.lock() else {
                return Err(SandboxError::Setup("the sandbox map is poisoned".into()));
            };
            if m.len() < self.0.cfg.max_sandboxes {
                return Ok(());
            }
            m.values()
                .filter(|l| !l.in_use())
                .max_by_key(|l| l.idle_for())
                .map(|l| l.project)
        };
        match victim {
            Some(p) => {
                tracing::info!(project = %p, "stopping an unused E2B sandbox to make room");
                self.stop(p).await;
                Ok(())
            }
            None => Err(SandboxError::Busy(format!(
                "all {} E2B sandboxes this server may run are in use; try again in a minute",
                self.0.cfg.max_sandboxes
            ))),
        }
    }

    /// Forgets the project's sandbox and kills it on E2B.
    async fn kill(&self, project: Uuid) {
        let live = self.0.live.lock().ok().and_then(|mut m| m.remove(&project));
        if let Some(live) = live {
            kill_live(&self.0.api, &live).await;
        }
    }
}

async fn kill_live(api: &Api, live: &Live) {
    live.stop();
    match api.kill(&live.sandbox_id).await {
        Ok(_) => {
            tracing::info!(project = %live.project, sandbox = %live.sandbox_id, "E2B sandbox stopped")
        }
        // Its time to live ends it anyway.
        Err(e) => {
            tracing::warn!(project = %live.project, sandbox = %live.sandbox_id, error = %e, "stopping an E2B sandbox failed")
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
        return Err(SandboxError::Setup(format!(
            "npm install failed: {}",
            done.output
                .chars()
                .rev()
                .take(1500)
                .collect::<String>()
                .chars()
                .rev()
                .collect::<String>()
        )));
    }
    Ok(())
}

/// Watches one sandbox until it is stopped: its dev server, its time to live, its idleness.
async fn watch(shared: Weak<Shared>, live: Arc<Live>) {
    loop {
        let Some(s) = shared.upgrade() else { return };
        if live.is_stopped() {
            return;
        }
        let answers = live.probe(&s.http).await;
        live.after_probe(answers);
        if !live.in_use() && live.idle_for() >= s.cfg.idle {
            let mine = s.live.lock().ok().and_then(|mut m| {
                let same = m.get(&live.project).is_some_and(|l| Arc::ptr_eq(l, &live));
                same.then(|| m.remove(&live.project)).flatten()
            });
            if mine.is_some() {
                tracing::info!(project = %live.project, "E2B sandbox idle; stopping it");
                kill_live(&s.api, &live).await;
            }
            return;
        }
        if (live.in_use() || live.wants_extending(EXTEND_EVERY))
            && let Ok(false) = s
                .api
                .set_timeout(&live.sandbox_id, s.cfg.idle + TTL_MARGIN)
                .await
        {
            // E2B ended it (its time ran out, or it was killed elsewhere): the next use
            // starts a new one from the server's records.
            tracing::warn!(project = %live.project, sandbox = %live.sandbox_id, "the E2B sandbox is gone");
            live.stop();
            if let Ok(mut m) = s.live.lock()
                && m.get(&live.project).is_some_and(|l| Arc::ptr_eq(l, &live))
            {
                m.remove(&live.project);
            }
            return;
        }
        drop(s);
        let pause = if answers {
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
        let live = self.ensure(project_id, template, files).await?;
        Ok(Arc::new(E2bSandbox::new(
            live,
            self.preview_url_of(project_id),
            self.0.http.clone(),
        )))
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
        self.0.live.lock().map(|m| m.len()).unwrap_or(0)
    }

    async fn stop_all(&self) {
        let all: Vec<Arc<Live>> = self
            .0
            .live
            .lock()
            .map(|mut m| m.drain().map(|(_, l)| l).collect())
            .unwrap_or_default();
        for live in all {
            kill_live(&self.0.api, &live).await;
        }
    }
}
