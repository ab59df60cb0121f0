//! Sandboxes on this machine: one runtime per project at most, `max_sandboxes` in all.
//!
//! Each project has a *slot* (an async mutex). Everything that starts, stops or takes a lease
//! on a project's runtime holds its slot: creating a runtime, a run taking its lease, the idle
//! reaper and the capacity check deciding a runtime is unused and stopping it. So a run can
//! never open a sandbox that is being stopped under it, and two runtimes of one project never
//! exist at once. Stopping another project's runtime to make room only *tries* its slot (a
//! busy slot means in use), so slots never wait on each other.
//!
//! Capacity: a registry counts live runtimes plus those being created. Past the cap, a preview
//! stops the least recently used runtime that no run holds, that has no open preview
//! connection and that nobody used for `evict_grace`; if there is none, it is told `Busy`
//! (the preview page answers 503 with Retry-After). A run may also stop a runtime that only a
//! preview uses (the agent's work comes first), and otherwise waits for a free place.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use codeflux_protocol::Template;
use uuid::Uuid;

use super::LocalConfig;
use super::capacity::{Purpose, Registry};
use super::runtime::{Parts, Runtime};
use super::sandbox::LocalSandbox;
use crate::cgroup::{CgroupRoot, CgroupSupport};
use crate::disk::check_mount_path;
use crate::mountns::MountNs;
use crate::net::EgressPolicy;
use crate::process;
use crate::template::TemplateStore;
use crate::{PreviewConn, PreviewState, Sandbox, SandboxError, SandboxProvider};

#[derive(Default)]
pub(super) struct Slot {
    pub rt: Option<Arc<Runtime>>,
}

pub(super) struct Shared {
    pub cfg: LocalConfig,
    pub templates: TemplateStore,
    pub cgroups: Option<CgroupRoot>,
    pub policy: Arc<EgressPolicy>,
    pub seccomp: Vec<PathBuf>,
    pub mountns: tokio::sync::Mutex<Option<Arc<MountNs>>>,
    pub slots: Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<Slot>>>>,
    pub registry: Mutex<Registry>,
    pub generation: AtomicU64,
}

/// Sandboxes on this machine.
#[derive(Clone)]
pub struct LocalProvider(pub(super) Arc<Shared>);

impl LocalProvider {
    /// Checks the tools, sets up cgroups and the seccomp programs and, inside a tokio runtime,
    /// starts the idle reaper.
    pub fn new(cfg: LocalConfig) -> Result<Self, SandboxError> {
        let root = process::is_root();
        let mut tools = vec!["/usr/bin/bwrap", "/usr/bin/prlimit"];
        if root {
            tools.extend([
                "/usr/bin/setpriv",
                "/usr/bin/nsenter",
                "/usr/bin/unshare",
                "/usr/bin/mount",
                "/usr/bin/umount",
                "/usr/sbin/mkfs.ext4",
            ]);
        }
        for tool in tools {
            if !std::path::Path::new(tool).exists() {
                return Err(SandboxError::Setup(format!(
                    "{tool} is missing (packages bubblewrap, util-linux, mount and e2fsprogs; `cargo xtask setup` installs them)"
                )));
            }
        }
        for p in [&cfg.data_dir, &cfg.template_cache] {
            check_mount_path(p)?;
        }
        if cfg.disk_bytes < 64 * 1024 * 1024 {
            return Err(SandboxError::Setup(
                "a sandbox disk needs at least 64 MiB".into(),
            ));
        }
        std::fs::create_dir_all(cfg.data_dir.join("sandboxes"))
            .map_err(|e| SandboxError::Setup(format!("creating the sandboxes dir: {e}")))?;
        let seccomp = crate::seccomp::write_programs(&cfg.data_dir.join("sandbox-etc"))?;
        let cgroups = if root {
            let support = CgroupSupport::detect();
            match &support {
                CgroupSupport::None { why } => {
                    tracing::warn!(
                        "sandbox memory, process and CPU limits fall back to rlimits only: {why}"
                    );
                }
                other => {
                    if !other.has_cpu() {
                        tracing::warn!("no cpu cgroup controller: sandboxes get no CPU quota");
                    }
                    tracing::info!(cgroups = ?other, "sandbox limits");
                }
            }
            Some(CgroupRoot::new(support))
        } else {
            tracing::warn!(
                "not running as root: sandboxes get no network (no npm install), no preview, no disk cap and no template packages"
            );
            None
        };
        let policy = Arc::new(EgressPolicy::for_hosts(cfg.egress_hosts.clone()));
        let templates = TemplateStore::new(cfg.templates_dir.clone(), cfg.template_cache.clone());
        let provider = LocalProvider(Arc::new(Shared {
            cfg,
            templates,
            cgroups,
            policy,
            seccomp,
            mountns: tokio::sync::Mutex::new(None),
            slots: Mutex::new(HashMap::new()),
            registry: Mutex::new(Registry::default()),
            generation: AtomicU64::new(0),
        }));
        provider.remove_old_workspaces();
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

    /// Workspaces of the layout before project disks (`<data>/workspaces/<id>`, plain
    /// directories a sandbox wrote): removed in the background, fd-relative.
    fn remove_old_workspaces(&self) {
        let old = self.0.cfg.data_dir.join("workspaces");
        if !old.exists() || tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        tokio::task::spawn_blocking(move || {
            if let Err(e) = crate::disk::remove_project_dir(&old) {
                tracing::warn!("removing the old workspaces: {e}");
            } else {
                tracing::info!("removed the workspaces of the previous layout");
            }
        });
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

    pub(super) fn slot(&self, id: Uuid) -> Arc<tokio::sync::Mutex<Slot>> {
        match self.0.slots.lock() {
            Ok(mut m) => m.entry(id).or_default().clone(),
            Err(p) => p.into_inner().entry(id).or_default().clone(),
        }
    }

    pub(super) fn live(&self, id: Uuid) -> Option<Arc<Runtime>> {
        self.0
            .registry
            .lock()
            .ok()
            .and_then(|r| r.live.get(&id).cloned())
            .filter(|rt| !rt.is_stopped())
    }

    /// The server's mount namespace for disks (made on first use; made again if it died).
    async fn mountns(&self) -> Result<Option<Arc<MountNs>>, SandboxError> {
        if !process::is_root() {
            return Ok(None);
        }
        let mut ns = self.0.mountns.lock().await;
        if let Some(n) = ns.as_ref()
            && n.alive()
        {
            return Ok(Some(n.clone()));
        }
        if ns.is_some() {
            tracing::error!("the sandboxes' mount namespace died; making a new one");
        }
        let n = Arc::new(MountNs::create().await?);
        *ns = Some(n.clone());
        Ok(Some(n))
    }

    /// The project's runtime, created when missing (with a place among the live ones). With
    /// `lease`, a run's lease is taken while the slot is held.
    async fn acquire(
        &self,
        id: Uuid,
        template: Template,
        files: Option<&BTreeMap<String, String>>,
        purpose: Purpose,
    ) -> Result<(Arc<Runtime>, bool, Option<super::runtime::UseGuard>), SandboxError> {
        let slot = self.slot(id);
        let mut s = slot.lock().await;
        if let Some(rt) = &s.rt {
            if !rt.is_stopped() {
                let lease = (purpose == Purpose::Run).then(|| rt.lease_run());
                return Ok((rt.clone(), false, lease));
            }
            s.rt = None;
        }
        let seat = self.reserve(purpose).await?;
        let generation = self.0.generation.fetch_add(1, Ordering::SeqCst);
        let mountns = self.mountns().await?;
        let parts = Parts {
            cfg: &self.0.cfg,
            templates: &self.0.templates,
            cgroups: self.0.cgroups.as_ref(),
            policy: &self.0.policy,
            seccomp: &self.0.seccomp,
            mountns,
        };
        let rt = Arc::new(Runtime::create(parts, id, generation, template, files).await?);
        seat.commit(id, rt.clone());
        let lease = (purpose == Purpose::Run).then(|| rt.lease_run());
        s.rt = Some(rt.clone());
        tracing::info!(project = %id, "sandbox started");
        Ok((rt, true, lease))
    }

    /// Whether the project's sandbox runtime (namespace, proxy, dev server) is up.
    pub fn is_running(&self, project_id: Uuid) -> bool {
        self.live(project_id).is_some()
    }

    /// How many runtimes are live.
    pub fn live_count(&self) -> usize {
        self.0.registry.lock().map(|r| r.live.len()).unwrap_or(0)
    }

    /// Resident memory (sum of VmRSS) of a running sandbox's processes, for figures.
    pub fn sandbox_rss(&self, project_id: Uuid) -> Option<u64> {
        Some(self.live(project_id)?.cgroup()?.rss_bytes())
    }

    /// Resident memory of every running sandbox (bytes), for figures.
    pub fn memory_in_use(&self) -> Vec<(Uuid, u64)> {
        match self.0.registry.lock() {
            Ok(r) => r
                .live
                .iter()
                .filter_map(|(id, rt)| Some((*id, rt.cgroup()?.memory_bytes()?)))
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// The dev server's output: (bytes kept, bytes read in all).
    pub fn dev_server_log_bytes(&self, project_id: Uuid) -> (usize, u64) {
        self.live(project_id)
            .map(|rt| rt.log_bytes())
            .unwrap_or_default()
    }

    /// Mount points of the project's disk in the sandboxes' mount namespace (for tests).
    pub async fn sandbox_mounts(&self, project_id: Uuid) -> Vec<PathBuf> {
        let ns = self.0.mountns.lock().await.clone();
        let dir = self
            .0
            .cfg
            .data_dir
            .join("sandboxes")
            .join(project_id.to_string());
        ns.map(|ns| ns.mounts_under(&dir)).unwrap_or_default()
    }

    /// The cgroup leaves' processes of a running sandbox (for tests and figures).
    pub fn sandbox_pids(&self, project_id: Uuid) -> Vec<i32> {
        self.live(project_id)
            .and_then(|rt| rt.cgroup().map(|c| c.pids()))
            .unwrap_or_default()
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
        let (rt, created, lease) = self
            .acquire(project_id, template, files, Purpose::Run)
            .await?;
        let lease = lease.ok_or_else(|| SandboxError::Setup("internal: no run lease".into()))?;
        if !created && let Some(files) = files {
            // A run starts from the latest finished version, whatever happened since.
            let files = files.clone();
            rt.blocking(move |ws| ws.replace_sources(&files)).await?;
        }
        rt.touch();
        rt.ensure_dev_server();
        Ok(Arc::new(LocalSandbox::new(lease)))
    }

    async fn stop(&self, project_id: Uuid) {
        self.stop_runtime(project_id).await;
    }

    async fn delete(&self, project_id: Uuid) -> Result<(), SandboxError> {
        let slot = self.slot(project_id);
        let mut s = slot.lock().await;
        if let Some(rt) = s.rt.take() {
            self.unregister(project_id, &rt);
            rt.shutdown().await;
        }
        let dirs = [
            self.0
                .cfg
                .data_dir
                .join("sandboxes")
                .join(project_id.to_string()),
            self.0
                .cfg
                .data_dir
                .join("sandbox-etc")
                .join(project_id.to_string()),
        ];
        tokio::task::spawn_blocking(move || {
            dirs.iter()
                .try_for_each(|d| crate::disk::remove_project_dir(d))
        })
        .await
        .map_err(|e| SandboxError::Setup(e.to_string()))?
    }

    fn preview_url(&self, project_id: Uuid) -> String {
        self.0.cfg.preview_url_of(project_id)
    }

    fn preview_state(&self, project_id: Uuid) -> PreviewState {
        match self.live(project_id) {
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
        let (rt, _, _) = self
            .acquire(project_id, template, files, Purpose::Preview)
            .await?;
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
        let (rt, created, _) = self
            .acquire(project_id, template, Some(files), Purpose::Preview)
            .await?;
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

    async fn connect_preview(&self, project_id: Uuid) -> std::io::Result<PreviewConn> {
        let rt = self
            .live(project_id)
            .ok_or_else(|| std::io::Error::other("the sandbox is not running"))?;
        let guard = rt.lease_conn();
        let ns = rt.netns().ok_or_else(|| {
            std::io::Error::other("this sandbox has no network (server not root)")
        })?;
        let stream = ns.connect(rt.dev_port, Duration::from_secs(5)).await?;
        Ok(PreviewConn::new(stream, Some(Box::new(guard))))
    }

    fn live_sandboxes(&self) -> usize {
        self.live_count()
    }

    async fn stop_all(&self) {
        let ids: Vec<Uuid> = self
            .0
            .registry
            .lock()
            .map(|r| r.live.keys().copied().collect())
            .unwrap_or_default();
        for id in ids {
            self.stop_runtime(id).await;
        }
    }

    fn dev_server_log(&self, project_id: Uuid) -> Vec<String> {
        self.live(project_id)
            .map(|rt| rt.log_lines())
            .unwrap_or_default()
    }
}
