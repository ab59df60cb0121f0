//! A running project: its disk mounted, its network namespace and egress proxy, its cgroups,
//! its workspace (fd-relative file access) and its dev server.
//!
//! Creation acquires each part as a guard (cgroups, namespace holder, proxy task, disk mount):
//! when a later step fails, the parts already made are released by their own `Drop`, so a
//! failed creation leaves no task, namespace, cgroup or mount behind. `shutdown` releases them
//! in order (processes killed, workspace closed, disk unmounted) while the runtime may still
//! be referenced; `Drop` does the same for whatever is left.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use codeflux_protocol::Template;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::supervisor::{DevState, Phase};
use super::{LocalConfig, SetupStep, dev_server, now_secs, project_uid};
use crate::cgroup::{CgroupRoot, Limits, ProjectCgroup};
use crate::disk::{DiskSpec, ProjectDisk};
use crate::mountns::MountNs;
use crate::net::{EgressPolicy, NetNs, NetNsHandle, PROXY_PORT};
use crate::process::{self, Isolation, SandboxSpec};
use crate::template::TemplateStore;
use crate::workspace::Workspace;
use crate::{PreviewState, SandboxError};

/// A task aborted when this value is dropped.
pub(super) struct AbortOnDrop(pub JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What a runtime is made from (the provider's shared parts).
pub(super) struct Parts<'a> {
    pub cfg: &'a LocalConfig,
    pub templates: &'a TemplateStore,
    pub cgroups: Option<&'a CgroupRoot>,
    pub policy: &'a Arc<EgressPolicy>,
    pub seccomp: &'a [std::path::PathBuf],
    pub mountns: Option<Arc<MountNs>>,
}

pub(super) struct Runtime {
    pub id: Uuid,
    pub template: Template,
    pub spec: SandboxSpec,
    pub dev_port: u16,
    pub dev_enabled: bool,
    pub preview_url: String,
    pub dev: Mutex<DevState>,
    /// The package.json the workspace's node_modules were installed for (the server's record;
    /// starts as the template's, because every runtime starts from the template's packages).
    pub installed: Mutex<String>,
    last_used: AtomicU64,
    /// Runs holding this runtime (a [`super::LocalSandbox`] each).
    runs: AtomicUsize,
    /// Open preview connections.
    conns: AtomicUsize,
    stopped: AtomicBool,
    ns: Option<NetNsHandle>,
    // Dropped in this order after `Drop::drop`: the workspace fd before the disk is unmounted.
    workspace: Mutex<Option<Arc<Workspace>>>,
    disk: ProjectDisk,
    proxy: Mutex<Option<AbortOnDrop>>,
    netns: Mutex<Option<NetNs>>,
    cgroup: Option<Arc<ProjectCgroup>>,
}

fn setup(e: impl std::fmt::Display) -> SandboxError {
    SandboxError::Setup(e.to_string())
}

impl Runtime {
    pub(super) async fn create(
        parts: Parts<'_>,
        id: Uuid,
        generation: u64,
        template: Template,
        files: Option<&BTreeMap<String, String>>,
    ) -> Result<Runtime, SandboxError> {
        let cfg = parts.cfg;
        let uid = project_uid(id);
        let root = process::is_root();
        let owner = root.then_some((uid, uid));
        let fail = |step: SetupStep| {
            if cfg.fail_at == Some(step) {
                Err(setup(format!("failing at {step:?} on purpose (test)")))
            } else {
                Ok(())
            }
        };

        // 1. Limits.
        let cgroup = match parts.cgroups {
            Some(cg) => cg
                .create_project(
                    &format!("{id}-{generation}"),
                    Limits {
                        memory_bytes: cfg.memory_bytes,
                        max_pids: cfg.max_processes,
                        cpus: cfg.cpus,
                    },
                )
                .map_err(setup)?
                .map(Arc::new),
            None => None,
        };

        // 2. Network: a namespace with only loopback, the egress proxy listening inside.
        let (netns, proxy) = if root {
            let ns = NetNs::create().await?;
            let listener = ns
                .listen(PROXY_PORT)
                .await
                .map_err(|e| setup(format!("egress proxy: {e}")))?;
            let task = tokio::spawn(crate::net::serve_proxy(listener, parts.policy.clone(), id));
            (Some(ns), Some(AbortOnDrop(task)))
        } else {
            (None, None)
        };
        fail(SetupStep::AfterNetwork)?;

        // 3. The disk, with the template's packages as the workspace's lower layer.
        let templates = parts.templates.clone();
        let lower = tokio::task::spawn_blocking(move || {
            templates.prepare(template)?;
            templates.lower_dir(template)
        })
        .await
        .map_err(|e| setup(format!("preparing the template: {e}")))??;
        let dir = cfg.data_dir.join("sandboxes").join(id.to_string());
        let spec = DiskSpec {
            dir: &dir,
            size_bytes: cfg.disk_bytes,
            owner,
            lower: Some(&lower),
        };
        let disk = match &parts.mountns {
            Some(ns) => ProjectDisk::attach(ns.clone(), &spec).await?,
            None => ProjectDisk::plain(&spec)?,
        };
        fail(SetupStep::AfterDisk)?;

        // 4. The workspace: exactly the latest version's sources (or the template's).
        let etc = cfg.data_dir.join("sandbox-etc").join(id.to_string());
        let iso = isolation(cfg, uid, root, disk.is_capped());
        let sources = match files {
            Some(f) => f.clone(),
            None => parts.templates.source_texts(template)?,
        };
        let template_pkg = parts
            .templates
            .source_texts(template)?
            .remove("package.json")
            .unwrap_or_default();
        let view = disk.workspace_view();
        let (etc2, iso2) = (etc.clone(), iso.clone());
        let workspace = tokio::task::spawn_blocking(move || -> Result<Workspace, SandboxError> {
            let ws = Workspace::open(&view, owner)?;
            ws.replace_sources(&sources)?;
            process::write_etc(&etc2, &iso2)
                .map_err(|e| setup(format!("writing the sandbox's /etc files: {e}")))?;
            Ok(ws)
        })
        .await
        .map_err(|e| setup(format!("preparing the workspace: {e}")))??;

        let spec = SandboxSpec {
            workspace: disk.workspace_path(),
            tmp: disk.tmp_path(),
            etc,
            iso,
            netns: netns.as_ref().map(NetNs::path),
            mountns: parts.mountns.as_ref().map(|m| m.ns_path()),
            join_dev: cgroup
                .as_ref()
                .map(|c| c.join_script(crate::cgroup::Leaf::Dev))
                .unwrap_or_default(),
            join_cmd: cgroup
                .as_ref()
                .map(|c| c.join_script(crate::cgroup::Leaf::Cmd))
                .unwrap_or_default(),
            seccomp: parts.seccomp.to_vec(),
        };
        let (dev_port, _) = dev_server(template);
        Ok(Runtime {
            id,
            template,
            spec,
            dev_port,
            dev_enabled: cfg.dev_servers,
            preview_url: cfg.preview_url_of(id),
            dev: Mutex::new(DevState::default()),
            installed: Mutex::new(template_pkg),
            last_used: AtomicU64::new(now_secs()),
            runs: AtomicUsize::new(0),
            conns: AtomicUsize::new(0),
            stopped: AtomicBool::new(false),
            ns: netns.as_ref().map(NetNs::handle),
            workspace: Mutex::new(Some(Arc::new(workspace))),
            disk,
            proxy: Mutex::new(proxy),
            netns: Mutex::new(netns),
            cgroup,
        })
    }

    pub(super) fn touch(&self) {
        self.last_used.store(now_secs(), Ordering::Relaxed);
    }

    /// Seconds since the runtime was last used.
    pub(super) fn idle_secs(&self) -> u64 {
        now_secs().saturating_sub(self.last_used.load(Ordering::Relaxed))
    }

    pub(super) fn last_used(&self) -> u64 {
        self.last_used.load(Ordering::Relaxed)
    }

    pub(super) fn runs(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }

    pub(super) fn conns(&self) -> usize {
        self.conns.load(Ordering::SeqCst)
    }

    pub(super) fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Counts a run as using this runtime until the guard is dropped.
    pub(super) fn lease_run(self: &Arc<Self>) -> UseGuard {
        self.runs.fetch_add(1, Ordering::SeqCst);
        self.touch();
        UseGuard {
            rt: self.clone(),
            what: Use::Run,
        }
    }

    /// Counts a preview connection until the guard is dropped.
    pub(super) fn lease_conn(self: &Arc<Self>) -> UseGuard {
        self.conns.fetch_add(1, Ordering::SeqCst);
        self.touch();
        UseGuard {
            rt: self.clone(),
            what: Use::Conn,
        }
    }

    pub(super) fn netns(&self) -> Option<&NetNsHandle> {
        self.ns.as_ref()
    }

    pub(super) fn cgroup(&self) -> Option<&ProjectCgroup> {
        self.cgroup.as_deref()
    }

    pub(super) fn state(&self) -> PreviewState {
        let Ok(d) = self.dev.lock() else {
            return PreviewState::Failed("the preview's state is unavailable".into());
        };
        match &d.phase {
            Phase::Stopped => PreviewState::Stopped,
            Phase::Installing => PreviewState::Starting("Installing packages…".into()),
            Phase::Starting => PreviewState::Starting(match &d.last_stop {
                Some(why) => format!("Restarting the dev server. It stopped:\n{why}"),
                None => "Starting the dev server…".into(),
            }),
            Phase::Ready => PreviewState::Ready,
            Phase::Failed(why) => PreviewState::Failed(why.clone()),
        }
    }

    /// Runs `f` on the workspace in a blocking thread.
    pub(super) async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Workspace) -> Result<T, crate::FileError> + Send + 'static,
    ) -> Result<T, SandboxError> {
        let ws = self
            .workspace
            .lock()
            .ok()
            .and_then(|w| w.clone())
            .ok_or(SandboxError::Stopped)?;
        tokio::task::spawn_blocking(move || f(&ws))
            .await
            .map_err(|e| setup(format!("file task failed: {e}")))?
            .map_err(SandboxError::from)
    }

    /// Stops everything: the dev server, every process (cgroup), the proxy and namespace; then
    /// closes the workspace and unmounts the disk. Idempotent.
    pub(super) async fn shutdown(self: &Arc<Self>) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Ok(mut d) = self.dev.lock() {
            if let Some(t) = d.task.take() {
                t.abort();
            }
            d.phase = Phase::Stopped;
        }
        if let Some(cg) = self.cgroup.clone()
            && let Err(e) = tokio::task::spawn_blocking(move || cg.kill_and_remove_blocking()).await
        {
            tracing::warn!(project = %self.id, "stopping the sandbox's processes: {e}");
        }
        drop(self.proxy.lock().ok().and_then(|mut p| p.take()));
        drop(self.netns.lock().ok().and_then(|mut n| n.take()));
        drop(self.workspace.lock().ok().and_then(|mut w| w.take()));
        self.disk.detach().await;
        tracing::info!(project = %self.id, "sandbox stopped");
    }
}

impl Drop for Runtime {
    /// The last user of a runtime is gone: nothing of the sandbox may outlive it.
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::SeqCst);
        if let Ok(mut d) = self.dev.lock()
            && let Some(t) = d.task.take()
        {
            t.abort();
        }
        if let Some(cg) = &self.cgroup {
            cg.kill_and_remove_blocking();
        }
        // The remaining fields (workspace fd, disk mount, proxy, namespace) go in their
        // declaration order, each releasing itself.
    }
}

enum Use {
    Run,
    Conn,
}

/// One use of a runtime (a run or a preview connection), counted until dropped.
pub(super) struct UseGuard {
    rt: Arc<Runtime>,
    what: Use,
}

impl UseGuard {
    pub(super) fn runtime(&self) -> &Arc<Runtime> {
        &self.rt
    }
}

impl Drop for UseGuard {
    fn drop(&mut self) {
        self.rt.touch();
        match self.what {
            Use::Run => self.rt.runs.fetch_sub(1, Ordering::SeqCst),
            Use::Conn => self.rt.conns.fetch_sub(1, Ordering::SeqCst),
        };
    }
}

fn isolation(cfg: &LocalConfig, uid: u32, root: bool, capped: bool) -> Isolation {
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
    env.extend(cfg.dev_env.iter().cloned());
    Isolation {
        uid,
        gid: uid,
        max_processes: cfg.max_processes,
        // With a capped disk, one file may be as large as the disk; without, 1 GiB.
        max_file_bytes: if capped {
            cfg.disk_bytes
        } else {
            1024 * 1024 * 1024
        },
        max_open_files: 4096,
        env,
    }
}
