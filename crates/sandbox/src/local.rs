//! The local backend: sandboxes on the server's own machine.
//!
//! Each project has a workspace (`<data>/workspaces/<id>`, mode 0700, owned by the project's
//! own host uid), cloned from a prepared template. While the project is in use it has a
//! *runtime*: its own network namespace (only loopback; an egress proxy inside lets the
//! package registry through), its cgroups (memory, processes) and its dev server. Every command
//! is a fresh bubblewrap sandbox in that namespace, as that uid. Idle runtimes are stopped and
//! revived on demand from the project's latest files.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use codeflux_protocol::Template;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{OnceCell, mpsc};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::cgroup::{CgroupSupport, ProjectCgroup};
use crate::net::{EgressPolicy, NetNs, PROXY_PORT};
use crate::process::{self, Isolation, Placement};
use crate::template::{INSTALLED_STAMP, TemplateStore};
use crate::workspace::Workspace;
use crate::{CommandResult, PreviewState, RunOptions, Sandbox, SandboxError, SandboxProvider};

/// Settings of the local backend.
#[derive(Clone, Debug)]
pub struct LocalConfig {
    /// CodeFlux's data dir; workspaces live in `<data_dir>/workspaces`.
    pub data_dir: PathBuf,
    /// The templates' sources (`sandbox-templates/` of the checkout).
    pub templates_dir: PathBuf,
    /// Where prepared templates (with node_modules) are kept; shared by every data dir.
    pub template_cache: PathBuf,
    /// The port previews are reached on (the app's own port).
    pub preview_port: u16,
    pub max_processes: u32,
    pub max_file_bytes: u64,
    pub tmp_bytes: u64,
    /// Memory of a project's sandbox (dev server and commands together).
    pub memory_bytes: u64,
    /// Hosts the egress proxy lets through (the npm registry).
    pub egress_hosts: Vec<String>,
    /// The registry URL and CA file npm uses on this host (given to npm in the sandbox).
    pub npm_registry: Option<String>,
    pub npm_cafile: Option<String>,
    /// A dev server nobody looked at for this long is stopped.
    pub idle_stop: Duration,
    /// Whether sandboxes run their dev server (tests of other parts turn it off).
    pub dev_servers: bool,
}

impl LocalConfig {
    pub fn new(data_dir: PathBuf, templates_dir: PathBuf, preview_port: u16) -> Self {
        let cache = std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(".cache/codeflux/templates"))
            .unwrap_or_else(|| data_dir.join("template-cache"));
        Self {
            data_dir,
            templates_dir,
            template_cache: cache,
            preview_port,
            max_processes: 512,
            max_file_bytes: 1024 * 1024 * 1024,
            tmp_bytes: 256 * 1024 * 1024,
            memory_bytes: 2 * 1024 * 1024 * 1024,
            egress_hosts: vec!["registry.npmjs.org".into()],
            npm_registry: None,
            npm_cafile: None,
            idle_stop: Duration::from_secs(15 * 60),
            dev_servers: true,
        }
    }

    /// Reads the host's npm registry and CA file (`npm config get`), and allows the registry's
    /// host through the egress proxy. Blocking (runs npm).
    pub fn with_host_npm(mut self) -> Self {
        let get = |key: &str| {
            std::process::Command::new("npm")
                .args(["config", "get", key])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                .filter(|v| !v.is_empty() && v != "null" && v != "undefined")
        };
        if let Some(registry) = get("registry") {
            if let Some(host) = registry
                .split("://")
                .nth(1)
                .and_then(|rest| rest.split(['/', ':']).next())
                && !self.egress_hosts.iter().any(|h| h == host)
            {
                self.egress_hosts.push(host.to_owned());
            }
            self.npm_registry = Some(registry);
        }
        self.npm_cafile = get("cafile").filter(|f| std::path::Path::new(f).exists());
        self
    }
}

/// The host uid a project's sandbox runs as: one per project, above every ordinary account
/// (1,000,000,000 + 30 random bits of the project id; a clash would only couple two projects'
/// process limits, never their files: each sandbox sees only its own workspace).
pub fn project_uid(project_id: Uuid) -> u32 {
    let b = project_id.as_bytes();
    let low = u32::from_le_bytes([b[12], b[13], b[14], b[15]]) & 0x3fff_ffff;
    1_000_000_000 + low
}

/// The dev server of a template: its port inside the sandbox and its command.
fn dev_server(template: Template) -> (u16, &'static str) {
    match template {
        Template::ViteReact => (
            5173,
            "exec node node_modules/vite/bin/vite.js --host 127.0.0.1 --port 5173 --strictPort",
        ),
        Template::NextJs => (
            3000,
            "exec node node_modules/next/dist/bin/next dev --turbopack -H 127.0.0.1 -p 3000",
        ),
    }
}

struct Shared {
    cfg: LocalConfig,
    templates: TemplateStore,
    cgroups: CgroupSupport,
    policy: Arc<EgressPolicy>,
    runtimes: Mutex<HashMap<Uuid, Arc<OnceCell<Arc<Runtime>>>>>,
}

/// Sandboxes on this machine.
#[derive(Clone)]
pub struct LocalProvider(Arc<Shared>);

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

impl LocalProvider {
    /// Checks the tools, probes cgroups and, inside a tokio runtime, starts the idle reaper.
    pub fn new(cfg: LocalConfig) -> Result<Self, SandboxError> {
        let mut tools = vec!["/usr/bin/bwrap", "/usr/bin/prlimit"];
        if process::is_root() {
            tools.extend(["/usr/bin/setpriv", "/usr/bin/nsenter", "/usr/bin/unshare"]);
        }
        for tool in tools {
            if !std::path::Path::new(tool).exists() {
                return Err(SandboxError::Setup(format!(
                    "{tool} is missing (packages bubblewrap and util-linux; `cargo xtask setup` installs them)"
                )));
            }
        }
        std::fs::create_dir_all(cfg.data_dir.join("workspaces"))
            .map_err(|e| SandboxError::Setup(format!("creating the workspaces dir: {e}")))?;
        let cgroups = if process::is_root() {
            CgroupSupport::detect()
        } else {
            CgroupSupport::None {
                why: "not running as root".into(),
            }
        };
        match &cgroups {
            CgroupSupport::None { why } => {
                tracing::warn!("sandbox memory and process limits fall back to rlimits only: {why}")
            }
            other => tracing::info!(cgroups = ?other, "sandbox limits"),
        }
        if !process::is_root() {
            tracing::warn!(
                "not running as root: sandboxes get no network (no npm install) and no preview"
            );
        }
        let policy = Arc::new(EgressPolicy::for_hosts(cfg.egress_hosts.clone()));
        let templates = TemplateStore::new(cfg.templates_dir.clone(), cfg.template_cache.clone());
        let provider = LocalProvider(Arc::new(Shared {
            cfg,
            templates,
            cgroups,
            policy,
            runtimes: Mutex::new(HashMap::new()),
        }));
        if tokio::runtime::Handle::try_current().is_ok() {
            let weak = Arc::downgrade(&provider.0);
            let every = (provider.0.cfg.idle_stop / 2)
                .clamp(Duration::from_millis(200), Duration::from_secs(30));
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    let Some(shared) = weak.upgrade() else { return };
                    LocalProvider(shared).reap_idle().await;
                }
            });
        }
        Ok(provider)
    }

    /// Prepares the templates' installed copies (what `codeflux prepare-templates` does).
    pub async fn prepare_templates(&self) -> Result<Vec<PathBuf>, SandboxError> {
        let store = self.0.templates.clone();
        tokio::task::spawn_blocking(move || {
            Template::ALL
                .into_iter()
                .map(|t| store.prepare(t))
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|e| SandboxError::Setup(e.to_string()))?
    }

    fn cell(&self, id: Uuid) -> Arc<OnceCell<Arc<Runtime>>> {
        match self.0.runtimes.lock() {
            Ok(mut m) => m.entry(id).or_default().clone(),
            Err(_) => Arc::new(OnceCell::new()),
        }
    }

    fn existing(&self, id: Uuid) -> Option<Arc<Runtime>> {
        self.0
            .runtimes
            .lock()
            .ok()
            .and_then(|m| m.get(&id).and_then(|c| c.get().cloned()))
    }

    /// The project's runtime, created when missing. `files` are applied only to a new runtime.
    async fn runtime(
        &self,
        id: Uuid,
        template: Template,
        files: Option<&BTreeMap<String, String>>,
    ) -> Result<(Arc<Runtime>, bool), SandboxError> {
        let cell = self.cell(id);
        let mut created = false;
        let rt = cell
            .get_or_try_init(|| async {
                created = true;
                Runtime::create(&self.0, id, template, files)
                    .await
                    .map(Arc::new)
            })
            .await?
            .clone();
        Ok((rt, created))
    }

    async fn stop_runtime(&self, id: Uuid) {
        let cell = self.0.runtimes.lock().ok().and_then(|mut m| m.remove(&id));
        if let Some(rt) = cell.and_then(|c| c.get().cloned()) {
            rt.shutdown().await;
        }
    }

    async fn reap_idle(&self) {
        let idle = self.0.cfg.idle_stop.as_secs();
        let candidates: Vec<Uuid> = match self.0.runtimes.lock() {
            Ok(m) => m
                .iter()
                .filter_map(|(id, c)| {
                    let rt = c.get()?;
                    // Held elsewhere = a run uses it.
                    let busy = Arc::strong_count(rt) > 1;
                    let quiet =
                        now_secs().saturating_sub(rt.last_used.load(Ordering::Relaxed)) > idle;
                    (!busy && quiet).then_some(*id)
                })
                .collect(),
            Err(_) => Vec::new(),
        };
        for id in candidates {
            tracing::info!(project = %id, "stopping an idle sandbox");
            self.stop_runtime(id).await;
        }
    }

    /// Stops every running sandbox (at server shutdown).
    pub async fn stop_all(&self) {
        let ids: Vec<Uuid> = self
            .0
            .runtimes
            .lock()
            .map(|m| m.keys().copied().collect())
            .unwrap_or_default();
        for id in ids {
            self.stop_runtime(id).await;
        }
    }

    /// Whether the project's sandbox runtime (namespace, proxy, dev server) is up.
    pub fn is_running(&self, project_id: Uuid) -> bool {
        self.existing(project_id).is_some()
    }

    /// Resident memory (sum of VmRSS) of a running sandbox's processes, for figures.
    pub fn sandbox_rss(&self, project_id: Uuid) -> Option<u64> {
        let rt = self.existing(project_id)?;
        Some(rt.cgroup.as_ref()?.rss_bytes())
    }

    /// Resident memory of every running sandbox (bytes), for figures.
    pub fn memory_in_use(&self) -> Vec<(Uuid, u64)> {
        match self.0.runtimes.lock() {
            Ok(m) => m
                .iter()
                .filter_map(|(id, c)| {
                    let rt = c.get()?;
                    Some((*id, rt.cgroup.as_ref()?.memory_bytes()?))
                })
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

#[async_trait]
impl SandboxProvider for LocalProvider {
    async fn open(
        &self,
        project_id: Uuid,
        template: Template,
        files: Option<&BTreeMap<String, String>>,
    ) -> Result<Arc<dyn Sandbox>, SandboxError> {
        let (rt, created) = self.runtime(project_id, template, files).await?;
        if !created && let Some(files) = files {
            // A run starts from the latest finished version, whatever happened since.
            let files = files.clone();
            rt.blocking(move |ws| ws.replace_sources(&files)).await?;
        }
        rt.touch();
        rt.ensure_dev_server();
        Ok(Arc::new(LocalSandbox { rt }))
    }

    async fn stop(&self, project_id: Uuid) {
        self.stop_runtime(project_id).await;
    }

    fn preview_url(&self, project_id: Uuid) -> String {
        format!(
            "http://{project_id}.preview.localhost:{}/",
            self.0.cfg.preview_port
        )
    }

    fn preview_state(&self, project_id: Uuid) -> PreviewState {
        match self.existing(project_id) {
            None => PreviewState::Stopped,
            Some(rt) => rt.state(),
        }
    }

    async fn start_preview(
        &self,
        project_id: Uuid,
        template: Template,
        files: Option<&BTreeMap<String, String>>,
    ) -> Result<(), SandboxError> {
        let (rt, _) = self.runtime(project_id, template, files).await?;
        rt.touch();
        rt.ensure_dev_server();
        Ok(())
    }

    async fn show_files(
        &self,
        project_id: Uuid,
        template: Template,
        files: &BTreeMap<String, String>,
    ) -> Result<(), SandboxError> {
        let (rt, created) = self.runtime(project_id, template, Some(files)).await?;
        if !created {
            let files = files.clone();
            rt.blocking(move |ws| ws.replace_sources(&files)).await?;
            if let Err(why) = rt.install_if_needed().await {
                return Err(SandboxError::Setup(why));
            }
        }
        rt.touch();
        rt.ensure_dev_server();
        Ok(())
    }

    async fn connect_preview(&self, project_id: Uuid) -> std::io::Result<TcpStream> {
        let rt = self
            .existing(project_id)
            .ok_or_else(|| std::io::Error::other("the sandbox is not running"))?;
        rt.touch();
        let ns = rt.netns.as_ref().ok_or_else(|| {
            std::io::Error::other("this sandbox has no network (server not root)")
        })?;
        ns.connect(rt.dev_port, Duration::from_secs(5)).await
    }

    fn dev_server_log(&self, project_id: Uuid) -> Vec<String> {
        self.existing(project_id)
            .map(|rt| rt.log_lines())
            .unwrap_or_default()
    }
}

/// A running project: workspace, namespace, proxy, cgroups, dev server.
struct Runtime {
    id: Uuid,
    template: Template,
    dir: PathBuf,
    etc: PathBuf,
    iso: Isolation,
    workspace: Arc<Workspace>,
    place: Placement,
    netns: Option<NetNs>,
    proxy: Option<JoinHandle<()>>,
    cgroup: Option<ProjectCgroup>,
    dev_port: u16,
    dev_enabled: bool,
    preview_url: String,
    dev: Mutex<DevState>,
    last_used: AtomicU64,
}

#[derive(Default)]
struct DevState {
    phase: Phase,
    task: Option<JoinHandle<()>>,
    log: VecDeque<String>,
}

#[derive(Clone, Debug, Default, PartialEq)]
enum Phase {
    #[default]
    Stopped,
    Installing,
    Starting,
    Ready,
    Failed(String),
}

impl Runtime {
    async fn create(
        shared: &Shared,
        id: Uuid,
        template: Template,
        files: Option<&BTreeMap<String, String>>,
    ) -> Result<Runtime, SandboxError> {
        let cfg = &shared.cfg;
        let dir = cfg.data_dir.join("workspaces").join(id.to_string());
        let etc = cfg.data_dir.join("sandbox-etc").join(id.to_string());
        let uid = project_uid(id);
        let root = process::is_root();
        let owner = root.then_some((uid, uid));
        let mut env = vec![("MIMALLOC_PURGE_DELAY".to_owned(), "0".to_owned())];
        env.push(("MIMALLOC_ARENA_EAGER_COMMIT".into(), "0".into()));
        env.push(("BROWSER".into(), "none".into()));
        if root {
            let proxy = format!("http://127.0.0.1:{PROXY_PORT}");
            for k in [
                "npm_config_https_proxy",
                "npm_config_proxy",
                "HTTPS_PROXY",
                "https_proxy",
            ] {
                env.push((k.into(), proxy.clone()));
            }
        }
        if let Some(r) = &cfg.npm_registry {
            env.push(("npm_config_registry".into(), r.clone()));
        }
        if let Some(ca) = &cfg.npm_cafile {
            env.push(("npm_config_cafile".into(), ca.clone()));
        }
        let iso = Isolation {
            uid,
            gid: uid,
            max_processes: cfg.max_processes,
            max_file_bytes: cfg.max_file_bytes,
            max_open_files: 4096,
            tmp_bytes: cfg.tmp_bytes,
            env,
        };
        let templates = shared.templates.clone();
        let files = files.cloned();
        let (dir2, etc2, iso2) = (dir.clone(), etc.clone(), iso.clone());
        let workspace = tokio::task::spawn_blocking(move || -> Result<Workspace, SandboxError> {
            let fresh = !dir2.join("package.json").exists();
            let ws = Workspace::open(&dir2, owner)?;
            if let Some((u, g)) = owner {
                rustix::fs::chown(
                    &dir2,
                    Some(rustix::process::Uid::from_raw(u)),
                    Some(rustix::process::Gid::from_raw(g)),
                )
                .map_err(|e| SandboxError::Setup(format!("chown workspace: {e}")))?;
            }
            rustix::fs::chmod(&dir2, rustix::fs::Mode::from_raw_mode(0o700))
                .map_err(|e| SandboxError::Setup(format!("chmod workspace: {e}")))?;
            if fresh {
                templates.clone_into(template, &ws, owner)?;
            }
            if let Some(files) = &files {
                ws.replace_sources(files)?;
            }
            process::write_etc(&etc2, &iso2).map_err(|e| {
                SandboxError::Setup(format!("writing the sandbox's /etc files: {e}"))
            })?;
            Ok(ws)
        })
        .await
        .map_err(|e| SandboxError::Setup(format!("preparing the workspace: {e}")))??;

        let (netns, proxy) = if root {
            let ns = NetNs::create().await?;
            let listener = ns
                .listen(PROXY_PORT)
                .await
                .map_err(|e| SandboxError::Setup(format!("egress proxy: {e}")))?;
            let task = tokio::spawn(crate::net::serve_proxy(listener, shared.policy.clone(), id));
            (Some(ns), Some(task))
        } else {
            (None, None)
        };
        let cgroup =
            ProjectCgroup::create(&shared.cgroups, id, cfg.memory_bytes, cfg.max_processes)
                .map_err(SandboxError::Setup)?;
        let place = Placement {
            netns: netns.as_ref().map(NetNs::path),
            cgroup_join: cgroup.as_ref().map(ProjectCgroup::join_script),
        };
        let (dev_port, _) = dev_server(template);
        Ok(Runtime {
            id,
            template,
            dir,
            etc,
            iso,
            workspace: Arc::new(workspace),
            place,
            netns,
            proxy,
            cgroup,
            dev_port,
            dev_enabled: cfg.dev_servers,
            preview_url: format!("http://{id}.preview.localhost:{}/", cfg.preview_port),
            dev: Mutex::new(DevState::default()),
            last_used: AtomicU64::new(now_secs()),
        })
    }

    fn touch(&self) {
        self.last_used.store(now_secs(), Ordering::Relaxed);
    }

    fn state(&self) -> PreviewState {
        let phase = self.dev.lock().map(|d| d.phase.clone()).unwrap_or_default();
        match phase {
            Phase::Stopped => PreviewState::Stopped,
            Phase::Installing => PreviewState::Starting("Installing packages…".into()),
            Phase::Starting => PreviewState::Starting("Starting the dev server…".into()),
            Phase::Ready => PreviewState::Ready,
            Phase::Failed(why) => PreviewState::Failed(why),
        }
    }

    fn log_lines(&self) -> Vec<String> {
        self.dev
            .lock()
            .map(|d| d.log.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn set_phase(&self, phase: Phase) {
        if let Ok(mut d) = self.dev.lock() {
            d.phase = phase;
        }
    }

    fn push_log(&self, line: String) {
        if let Ok(mut d) = self.dev.lock() {
            if d.log.len() >= 300 {
                d.log.pop_front();
            }
            d.log.push_back(line);
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Workspace) -> Result<T, crate::FileError> + Send + 'static,
    ) -> Result<T, SandboxError> {
        let ws = self.workspace.clone();
        tokio::task::spawn_blocking(move || f(&ws))
            .await
            .map_err(|e| SandboxError::Setup(format!("file task failed: {e}")))?
            .map_err(SandboxError::from)
    }

    /// Starts the dev server supervisor unless it runs (or the sandbox has no network).
    fn ensure_dev_server(self: &Arc<Self>) {
        if self.netns.is_none() || !self.dev_enabled {
            return;
        }
        let Ok(mut d) = self.dev.lock() else { return };
        let running = d.task.as_ref().is_some_and(|t| !t.is_finished());
        if running {
            return;
        }
        d.phase = Phase::Starting;
        let weak = Arc::downgrade(self);
        d.task = Some(tokio::spawn(async move { supervise(weak).await }));
    }

    async fn shutdown(&self) {
        if let Ok(mut d) = self.dev.lock() {
            if let Some(t) = d.task.take() {
                t.abort();
            }
            d.phase = Phase::Stopped;
        }
        if let Some(p) = &self.proxy {
            p.abort();
        }
        if let Some(cg) = &self.cgroup {
            cg.kill_and_remove().await;
        }
    }

    /// Installs packages when package.json changed since the last install.
    async fn install_if_needed(&self) -> Result<(), String> {
        let pkg = self.workspace.read("package.json").unwrap_or_default();
        let stamp = self.workspace.read(INSTALLED_STAMP).unwrap_or_default();
        if pkg.is_empty() || pkg == stamp {
            return Ok(());
        }
        let before = self.dev.lock().map(|d| d.phase.clone()).unwrap_or_default();
        self.set_phase(Phase::Installing);
        let r = process::run_shell(
            &self.dir,
            &self.etc,
            &self.iso,
            &self.place,
            "npm install --no-audit --no-fund --loglevel=error",
            &RunOptions {
                timeout: Duration::from_secs(600),
                output_cap: 16 * 1024,
            },
            None,
        )
        .await
        .map_err(|e| e.to_string())?;
        self.push_log(format!("$ npm install\n{}", r.output));
        if r.exit_code != Some(0) {
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
        let _ = self.workspace.write(INSTALLED_STAMP, &pkg);
        self.set_phase(before);
        Ok(())
    }
}

impl Drop for Runtime {
    /// The last user of a runtime is gone: nothing of the sandbox may outlive it.
    fn drop(&mut self) {
        if let Ok(mut d) = self.dev.lock()
            && let Some(t) = d.task.take()
        {
            t.abort();
        }
        if let Some(p) = &self.proxy {
            p.abort();
        }
        if let Some(cg) = &self.cgroup {
            cg.kill_and_remove_blocking();
        }
    }
}

/// Keeps the project's dev server running: start, wait until it answers, restart if it dies
/// (a few times), give up with a reason.
async fn supervise(weak: std::sync::Weak<Runtime>) {
    let mut restarts = 0u32;
    loop {
        let Some(rt) = weak.upgrade() else { return };
        if let Err(why) = rt.install_if_needed().await {
            rt.set_phase(Phase::Failed(why));
            return;
        }
        rt.set_phase(Phase::Starting);
        let (_, command) = dev_server(rt.template);
        let cmd = process::sandboxed(
            &rt.dir,
            &rt.etc,
            &rt.iso,
            &rt.place,
            &["/bin/sh", "-c", command],
        );
        let mut child = match cmd.and_then(|mut c| {
            c.spawn()
                .map_err(|e| SandboxError::Spawn(format!("starting the dev server: {e}")))
        }) {
            Ok(c) => c,
            Err(e) => {
                rt.set_phase(Phase::Failed(e.to_string()));
                return;
            }
        };
        for out in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        ]
        .into_iter()
        .flatten()
        {
            let w = weak.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(out).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    match w.upgrade() {
                        Some(rt) => rt.push_log(line),
                        None => return,
                    }
                }
            });
        }
        let port = rt.dev_port;
        let started = std::time::Instant::now();
        let mut ready = false;
        while started.elapsed() < Duration::from_secs(120) {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            if let Some(ns) = &rt.netns
                && answers_http(ns, port).await
            {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if ready {
            tracing::info!(project = %rt.id, secs = started.elapsed().as_secs_f32(), "dev server ready");
            rt.set_phase(Phase::Ready);
        }
        drop(rt);
        let status = child.wait().await;
        let Some(rt) = weak.upgrade() else { return };
        restarts += 1;
        let tail: Vec<String> = rt
            .log_lines()
            .into_iter()
            .rev()
            .take(8)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        tracing::warn!(project = %rt.id, ?status, restarts, "dev server exited");
        if restarts > 5 {
            rt.set_phase(Phase::Failed(format!(
                "The dev server keeps stopping. Its last output:\n{}",
                tail.join("\n")
            )));
            return;
        }
        rt.set_phase(Phase::Starting);
        drop(rt);
        tokio::time::sleep(Duration::from_millis(500 * u64::from(restarts))).await;
    }
}

/// Whether something answers HTTP on the port inside the namespace.
async fn answers_http(ns: &NetNs, port: u16) -> bool {
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

/// One project's sandbox, as handed to a run.
pub struct LocalSandbox {
    rt: Arc<Runtime>,
}

#[async_trait]
impl Sandbox for LocalSandbox {
    fn project_id(&self) -> Uuid {
        self.rt.id
    }

    async fn write_file(&self, path: &str, content: &str) -> Result<(), SandboxError> {
        let (path, content) = (path.to_owned(), content.to_owned());
        self.rt.blocking(move |ws| ws.write(&path, &content)).await
    }

    async fn read_file(&self, path: &str) -> Result<String, SandboxError> {
        let path = path.to_owned();
        self.rt.blocking(move |ws| ws.read(&path)).await
    }

    async fn list_files(&self) -> Result<Vec<String>, SandboxError> {
        self.rt.blocking(|ws| ws.list()).await
    }

    async fn snapshot(&self) -> Result<BTreeMap<String, String>, SandboxError> {
        self.rt.blocking(|ws| ws.snapshot()).await
    }

    async fn run(
        &self,
        command: &str,
        opts: &RunOptions,
        progress: Option<mpsc::Sender<String>>,
    ) -> Result<CommandResult, SandboxError> {
        self.rt.touch();
        let r = process::run_shell(
            &self.rt.dir,
            &self.rt.etc,
            &self.rt.iso,
            &self.rt.place,
            command,
            opts,
            progress,
        )
        .await;
        self.rt.touch();
        r
    }

    fn preview_url(&self) -> String {
        self.rt.preview_url.clone()
    }
}
