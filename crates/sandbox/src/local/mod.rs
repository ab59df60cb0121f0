//! The local backend: sandboxes on the server's own machine.
//!
//! Each project has a disk ([`crate::disk`]: an ext4 image with its workspace and /tmp, the
//! template's packages as a shared read-only overlay layer) and, while it is in use, a
//! *runtime* ([`runtime`]): its disk mounted, its own network namespace (only loopback; an
//! egress proxy inside lets the package registry through), its cgroups (memory, processes,
//! CPU) and its dev server ([`supervisor`]). Every command is a fresh bubblewrap sandbox in that
//! namespace, as the project's own uid, under a seccomp policy. The [`provider`] keeps at most
//! `max_sandboxes` runtimes, stops idle ones, and revives them on demand from the project's
//! latest version.

mod capacity;
mod provider;
mod runtime;
mod sandbox;
mod supervisor;

use std::path::PathBuf;
use std::time::Duration;

use codeflux_protocol::Template;
use uuid::Uuid;

pub use provider::LocalProvider;
pub use sandbox::LocalSandbox;

/// A step of a runtime's creation (for tests that make it fail on purpose).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetupStep {
    /// After the network namespace and the egress proxy are up.
    AfterNetwork,
    /// After the disk is mounted.
    AfterDisk,
}

/// Settings of the local backend.
#[derive(Clone, Debug)]
pub struct LocalConfig {
    /// CodeFlux's data dir; project disks live in `<data_dir>/sandboxes`.
    pub data_dir: PathBuf,
    /// The templates' sources (`sandbox-templates/` of the checkout).
    pub templates_dir: PathBuf,
    /// Where prepared templates (with node_modules) are kept; shared by every data dir.
    pub template_cache: PathBuf,
    /// The port previews are reached on (the app's own port).
    pub preview_port: u16,
    /// A project's preview address, `{id}` standing for the project's id (default:
    /// `http://{id}.preview.localhost:<preview_port>/`).
    pub preview_url: String,
    /// More environment for the dev server and commands (not secrets: the sandbox sees them),
    /// such as the preview host names the dev server must accept.
    pub dev_env: Vec<(String, String)>,
    pub max_processes: u32,
    /// Memory of a project's sandbox (dev server and commands together).
    pub memory_bytes: u64,
    /// Size of a project's disk (workspace, installed packages, npm cache, /tmp).
    pub disk_bytes: u64,
    /// CPUs' worth of time a project's processes may use (cgroup CPU quota).
    pub cpus: f64,
    /// Live sandboxes at most; past it the least recently used idle one is stopped.
    pub max_sandboxes: usize,
    /// A sandbox whose preview was used within this time (or has open connections) is not
    /// stopped to make room for another preview.
    pub evict_grace: Duration,
    /// Hosts the egress proxy lets through (the npm registry).
    pub egress_hosts: Vec<String>,
    /// The registry URL and CA file npm uses on this host (given to npm in the sandbox).
    pub npm_registry: Option<String>,
    pub npm_cafile: Option<String>,
    /// A dev server nobody looked at for this long is stopped.
    pub idle_stop: Duration,
    /// Whether sandboxes run their dev server (tests of other parts turn it off).
    pub dev_servers: bool,
    /// Tests only: make a runtime's creation fail at this step.
    #[doc(hidden)]
    pub fail_at: Option<SetupStep>,
}

/// Total memory of the machine (bytes), from /proc/meminfo.
pub fn machine_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: u64 = info
        .lines()
        .find(|l| l.starts_with("MemTotal:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// How many sandboxes fit: the machine's memory less 2 GiB for the server and the system,
/// divided by the memory one sandbox may use (at least 1).
pub fn default_max_sandboxes(memory_bytes: u64) -> usize {
    let total = machine_memory().unwrap_or(8 << 30);
    let usable = total.saturating_sub(2 << 30);
    usize::try_from(usable / memory_bytes.max(1))
        .unwrap_or(usize::MAX)
        .max(1)
}

impl LocalConfig {
    pub fn new(data_dir: PathBuf, templates_dir: PathBuf, preview_port: u16) -> Self {
        let cache = std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(".cache/codeflux/templates"))
            .unwrap_or_else(|| data_dir.join("template-cache"));
        let memory_bytes = 2 * 1024 * 1024 * 1024;
        Self {
            data_dir,
            templates_dir,
            template_cache: cache,
            preview_port,
            preview_url: format!("http://{{id}}.preview.localhost:{preview_port}/"),
            dev_env: Vec::new(),
            max_processes: 512,
            memory_bytes,
            disk_bytes: 4096 * 1024 * 1024,
            cpus: 1.0,
            max_sandboxes: default_max_sandboxes(memory_bytes),
            evict_grace: Duration::from_secs(30),
            egress_hosts: vec!["registry.npmjs.org".into()],
            npm_registry: None,
            npm_cafile: None,
            idle_stop: Duration::from_secs(15 * 60),
            dev_servers: true,
            fail_at: None,
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
pub(crate) fn dev_server(template: Template) -> (u16, &'static str) {
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

impl LocalConfig {
    /// The preview address of a project.
    pub fn preview_url_of(&self, id: Uuid) -> String {
        self.preview_url.replace("{id}", &id.to_string())
    }
}

pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}
