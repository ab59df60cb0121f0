//! The local backend: sandboxes on the server's own machine.
//!
//! Each project has a workspace directory (`<data>/workspaces/<id>`, mode 0700, owned by the
//! project's own host uid) and runs every command in a fresh bubblewrap sandbox as that uid,
//! with an empty environment, its own namespaces, only the workspace writable and the host's
//! home, data dir, checkout and other workspaces invisible.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use codeflux_protocol::Template;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::process::{self, Isolation};
use crate::workspace::{SKIP_DIRS, Workspace};
use crate::{CommandResult, RunOptions, Sandbox, SandboxError, SandboxProvider};

/// Settings of the local backend.
#[derive(Clone, Debug)]
pub struct LocalConfig {
    /// CodeFlux's data dir; workspaces live in `<data_dir>/workspaces`.
    pub data_dir: PathBuf,
    /// Where the templates' sources are (`sandbox-templates/` of the checkout).
    pub templates_dir: PathBuf,
    /// The port previews are reached on (the app's own port).
    pub preview_port: u16,
    pub max_processes: u32,
    pub max_file_bytes: u64,
    pub tmp_bytes: u64,
}

impl LocalConfig {
    pub fn new(data_dir: PathBuf, templates_dir: PathBuf, preview_port: u16) -> Self {
        Self {
            data_dir,
            templates_dir,
            preview_port,
            max_processes: 512,
            max_file_bytes: 1024 * 1024 * 1024,
            tmp_bytes: 256 * 1024 * 1024,
        }
    }
}

/// The host uid a project's sandbox runs as: one per project, above every ordinary account
/// (1,000,000,000 + 30 random bits of the project id; a clash only couples two projects'
/// process limits, never their files: each sandbox sees only its own workspace).
pub fn project_uid(project_id: Uuid) -> u32 {
    let b = project_id.as_bytes();
    let low = u32::from_le_bytes([b[12], b[13], b[14], b[15]]) & 0x3fff_ffff;
    1_000_000_000 + low
}

pub struct LocalProvider {
    cfg: LocalConfig,
    open: Mutex<HashMap<Uuid, Arc<LocalSandbox>>>,
}

impl LocalProvider {
    pub fn new(cfg: LocalConfig) -> Result<Self, SandboxError> {
        for tool in ["/usr/bin/bwrap", "/usr/bin/prlimit", "/usr/bin/setpriv"] {
            if !Path::new(tool).exists() {
                return Err(SandboxError::Setup(format!(
                    "{tool} is missing (packages bubblewrap and util-linux; `cargo xtask setup` installs them)"
                )));
            }
        }
        std::fs::create_dir_all(cfg.data_dir.join("workspaces"))
            .map_err(|e| SandboxError::Setup(format!("creating the workspaces dir: {e}")))?;
        Ok(Self {
            cfg,
            open: Mutex::new(HashMap::new()),
        })
    }

    fn workspace_dir(&self, id: Uuid) -> PathBuf {
        self.cfg.data_dir.join("workspaces").join(id.to_string())
    }

    fn etc_dir(&self, id: Uuid) -> PathBuf {
        self.cfg.data_dir.join("sandbox-etc").join(id.to_string())
    }

    fn isolation(&self, id: Uuid) -> Isolation {
        let uid = project_uid(id);
        Isolation {
            uid,
            gid: uid,
            max_processes: self.cfg.max_processes,
            max_file_bytes: self.cfg.max_file_bytes,
            max_open_files: 4096,
            tmp_bytes: self.cfg.tmp_bytes,
        }
    }
}

/// Copies the template's sources into a new workspace.
fn seed_from_template(
    templates_dir: &Path,
    ws: &Workspace,
    template: Template,
) -> Result<(), SandboxError> {
    let src = templates_dir.join(template.as_str());
    if !src.is_dir() {
        return Err(SandboxError::Setup(format!(
            "template {} not found at {}",
            template.as_str(),
            src.display()
        )));
    }
    copy_tree(&src, &src, ws)
}

fn copy_tree(root: &Path, dir: &Path, ws: &Workspace) -> Result<(), SandboxError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| SandboxError::Setup(format!("reading {}: {e}", dir.display())))?;
    for entry in entries {
        let entry = entry.map_err(|e| SandboxError::Setup(e.to_string()))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let ft = entry
            .file_type()
            .map_err(|e| SandboxError::Setup(e.to_string()))?;
        if ft.is_dir() {
            if !SKIP_DIRS.contains(&name.as_str()) {
                copy_tree(root, &path, ws)?;
            }
        } else if ft.is_file() {
            let rel = path
                .strip_prefix(root)
                .map_err(|e| SandboxError::Setup(e.to_string()))?
                .to_string_lossy()
                .into_owned();
            let bytes = std::fs::read(&path)
                .map_err(|e| SandboxError::Setup(format!("reading {}: {e}", path.display())))?;
            ws.write_bytes(&rel, &bytes)?;
        }
    }
    Ok(())
}

#[async_trait]
impl SandboxProvider for LocalProvider {
    async fn open(
        &self,
        project_id: Uuid,
        template: Template,
        files: Option<&BTreeMap<String, String>>,
    ) -> Result<Arc<dyn Sandbox>, SandboxError> {
        let dir = self.workspace_dir(project_id);
        let etc = self.etc_dir(project_id);
        let iso = self.isolation(project_id);
        let fresh = !dir.exists();
        let files = files.cloned();
        let owner = rustix::process::geteuid()
            .is_root()
            .then_some((iso.uid, iso.gid));
        let templates_dir = self.cfg.templates_dir.clone();
        let iso2 = iso.clone();
        let (ws, dir, etc) = tokio::task::spawn_blocking(move || -> Result<_, SandboxError> {
            let ws = Workspace::open(&dir, owner)?;
            if let Some((uid, gid)) = owner {
                chown_path(&dir, uid, gid)?;
            }
            set_mode(&dir, 0o700)?;
            if fresh {
                seed_from_template(&templates_dir, &ws, template)?;
            }
            if let Some(files) = &files {
                ws.replace_sources(files)?;
            }
            process::write_etc(&etc, &iso2).map_err(|e| {
                SandboxError::Setup(format!("writing the sandbox's /etc files: {e}"))
            })?;
            Ok((ws, dir, etc))
        })
        .await
        .map_err(|e| SandboxError::Setup(format!("preparing the workspace: {e}")))??;
        let sandbox = Arc::new(LocalSandbox {
            project_id,
            workspace: Arc::new(ws),
            dir,
            etc,
            iso,
            preview_url: self.preview_url(project_id),
        });
        if let Ok(mut open) = self.open.lock() {
            open.insert(project_id, sandbox.clone());
        }
        Ok(sandbox)
    }

    async fn stop(&self, project_id: Uuid) {
        if let Ok(mut open) = self.open.lock() {
            open.remove(&project_id);
        }
    }

    fn preview_url(&self, project_id: Uuid) -> String {
        format!(
            "http://{project_id}.preview.localhost:{}/",
            self.cfg.preview_port
        )
    }
}

fn chown_path(path: &Path, uid: u32, gid: u32) -> Result<(), SandboxError> {
    rustix::fs::chown(
        path,
        Some(rustix::process::Uid::from_raw(uid)),
        Some(rustix::process::Gid::from_raw(gid)),
    )
    .map_err(|e| SandboxError::Setup(format!("chown {}: {e}", path.display())))
}

fn set_mode(path: &Path, mode: u32) -> Result<(), SandboxError> {
    rustix::fs::chmod(path, rustix::fs::Mode::from_raw_mode(mode))
        .map_err(|e| SandboxError::Setup(format!("chmod {}: {e}", path.display())))
}

/// One project's sandbox on this machine.
pub struct LocalSandbox {
    project_id: Uuid,
    workspace: Arc<Workspace>,
    dir: PathBuf,
    etc: PathBuf,
    iso: Isolation,
    preview_url: String,
}

impl LocalSandbox {
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
}

#[async_trait]
impl Sandbox for LocalSandbox {
    fn project_id(&self) -> Uuid {
        self.project_id
    }

    async fn write_file(&self, path: &str, content: &str) -> Result<(), SandboxError> {
        let (path, content) = (path.to_owned(), content.to_owned());
        self.blocking(move |ws| ws.write(&path, &content)).await
    }

    async fn read_file(&self, path: &str) -> Result<String, SandboxError> {
        let path = path.to_owned();
        self.blocking(move |ws| ws.read(&path)).await
    }

    async fn list_files(&self) -> Result<Vec<String>, SandboxError> {
        self.blocking(|ws| ws.list()).await
    }

    async fn snapshot(&self) -> Result<BTreeMap<String, String>, SandboxError> {
        self.blocking(|ws| ws.snapshot()).await
    }

    async fn run(
        &self,
        command: &str,
        opts: &RunOptions,
        progress: Option<mpsc::Sender<String>>,
    ) -> Result<CommandResult, SandboxError> {
        process::run_shell(&self.dir, &self.etc, &self.iso, command, opts, progress).await
    }

    fn preview_url(&self) -> String {
        self.preview_url.clone()
    }
}
