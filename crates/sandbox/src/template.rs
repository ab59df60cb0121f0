//! Templates: prepared once per machine (`npm ci`), shared read-only by every project.
//!
//! A prepared template lives in the cache as `<name>-<hash of its sources and layout>/` with
//! `lower/node_modules`: the installed packages, the lower layer of every project's workspace
//! overlay ([`crate::disk`]). The overlay shows them to each project as its own and takes the
//! project's changes into the project's disk; the prepared copy is never written after it is
//! made. Its files are world-writable (0666/0777) so that, through the overlay, a project's
//! unprivileged uid can update or remove any package (the writes land in its upper layer);
//! the cache directory itself is root's, 0700, so no one else on the host reaches them.
//!
//! The sources are not part of the lower layer: the server writes them into each workspace
//! (from the template, or from the project's latest version), so they belong to the project.
//!
//! `npm ci` runs with a cleared environment (PATH, HOME for npm's own settings, CA paths): the
//! server's secrets never reach package scripts.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use codeflux_protocol::Template;
use sha2::{Digest, Sha256};

use crate::SandboxError;
use crate::workspace::SKIP_DIRS;

const STAMP: &str = ".codeflux-prepared";
/// Changes whenever the prepared layout changes (part of the directory name).
const LAYOUT: &str = "overlay-lower-v1";

fn setup(e: impl std::fmt::Display) -> SandboxError {
    SandboxError::Setup(e.to_string())
}

/// The template sources of the checkout and their prepared copies in the cache.
#[derive(Clone, Debug)]
pub struct TemplateStore {
    pub sources: PathBuf,
    pub cache: PathBuf,
}

impl TemplateStore {
    pub fn new(sources: PathBuf, cache: PathBuf) -> Self {
        Self { sources, cache }
    }

    /// The template's source files (no node_modules), relative path -> bytes.
    pub fn source_files(
        &self,
        template: Template,
    ) -> Result<BTreeMap<String, Vec<u8>>, SandboxError> {
        let root = self.sources.join(template.as_str());
        if !root.is_dir() {
            return Err(setup(format!(
                "template {} not found at {}",
                template.as_str(),
                root.display()
            )));
        }
        let mut out = BTreeMap::new();
        collect(&root, &root, &mut out)?;
        Ok(out)
    }

    /// The template's sources as text (what a new project's workspace starts with).
    pub fn source_texts(
        &self,
        template: Template,
    ) -> Result<BTreeMap<String, String>, SandboxError> {
        self.source_files(template)?
            .into_iter()
            .map(|(p, b)| {
                String::from_utf8(b)
                    .map(|t| (p.clone(), t))
                    .map_err(|_| setup(format!("template file {p} is not UTF-8 text")))
            })
            .collect()
    }

    /// Where the prepared copy of the current sources lives.
    pub fn prepared_dir(&self, template: Template) -> Result<PathBuf, SandboxError> {
        let files = self.source_files(template)?;
        let mut h = Sha256::new();
        h.update(LAYOUT.as_bytes());
        for (path, bytes) in &files {
            h.update(path.as_bytes());
            h.update([0]);
            h.update(bytes);
            h.update([0]);
        }
        let hex: String = h
            .finalize()
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(self.cache.join(format!("{}-{hex}", template.as_str())))
    }

    /// The overlay's lower layer of a prepared template (contains `node_modules`).
    pub fn lower_dir(&self, template: Template) -> Result<PathBuf, SandboxError> {
        Ok(self.prepared_dir(template)?.join("lower"))
    }

    /// Whether the template is prepared.
    pub fn is_prepared(&self, template: Template) -> bool {
        self.prepared_dir(template)
            .map(|d| d.join(STAMP).exists())
            .unwrap_or(false)
    }

    /// Prepares the template if needed (copy + `npm ci`), returning its directory. Blocking:
    /// call from a blocking thread. Safe against a concurrent preparation (rename wins once).
    pub fn prepare(&self, template: Template) -> Result<PathBuf, SandboxError> {
        let dir = self.prepared_dir(template)?;
        if dir.join(STAMP).exists() {
            return Ok(dir);
        }
        std::fs::create_dir_all(&self.cache).map_err(setup)?;
        rustix::fs::chmod(&self.cache, rustix::fs::Mode::from_raw_mode(0o700))
            .map_err(|e| setup(format!("chmod {}: {e}", self.cache.display())))?;
        let tmp = self.cache.join(format!(
            ".{}-tmp-{}",
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&tmp);
        let build = tmp.join("build");
        std::fs::create_dir_all(&build).map_err(setup)?;
        for (path, bytes) in self.source_files(template)? {
            let dest = build.join(&path);
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent).map_err(setup)?;
            }
            std::fs::write(&dest, bytes).map_err(setup)?;
        }
        let started = std::time::Instant::now();
        let out = npm_ci(&build).map_err(|e| {
            setup(format!(
                "running npm ci for the {} template: {e}",
                template.as_str()
            ))
        })?;
        if !out.status.success() {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(setup(format!(
                "npm ci for the {} template failed: {}",
                template.as_str(),
                String::from_utf8_lossy(&out.stderr)
                    .chars()
                    .take(2000)
                    .collect::<String>()
            )));
        }
        tracing::info!(
            template = template.as_str(),
            secs = started.elapsed().as_secs_f32(),
            "template prepared"
        );
        let lower = tmp.join("lower");
        std::fs::create_dir_all(&lower).map_err(setup)?;
        std::fs::rename(build.join("node_modules"), lower.join("node_modules")).map_err(setup)?;
        std::fs::remove_dir_all(&build).map_err(setup)?;
        open_up(&lower.join("node_modules"))?;
        std::fs::write(tmp.join(STAMP), "").map_err(setup)?;
        match std::fs::rename(&tmp, &dir) {
            Ok(()) => {}
            Err(_) if dir.join(STAMP).exists() => {
                let _ = std::fs::remove_dir_all(&tmp);
            }
            Err(e) => return Err(setup(format!("installing the prepared template: {e}"))),
        }
        Ok(dir)
    }
}

/// `npm ci` with a cleared environment: only what npm needs to find its settings, the
/// registry's CA and its cache.
fn npm_ci(dir: &Path) -> std::io::Result<std::process::Output> {
    let mut cmd = std::process::Command::new("npm");
    cmd.args([
        "ci",
        "--no-audit",
        "--no-fund",
        "--loglevel=error",
        "--prefer-offline",
    ])
    .current_dir(dir)
    .env_clear()
    .env("NEXT_TELEMETRY_DISABLED", "1")
    .env("CI", "1");
    for key in [
        "PATH",
        "HOME",
        "LANG",
        "NODE_EXTRA_CA_CERTS",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
    ] {
        if let Some(v) = std::env::var_os(key) {
            cmd.env(key, v);
        }
    }
    if std::env::var_os("PATH").is_none() {
        cmd.env("PATH", "/usr/local/bin:/usr/bin:/bin");
    }
    cmd.output()
}

/// Files beside a template that build its E2B image: not part of a project's sources.
const E2B_BUILD_FILES: &[&str] = &[
    "e2b.toml",
    "e2b.Dockerfile",
    "compile_page.sh",
    "start_vite.sh",
];

fn collect(
    root: &Path,
    dir: &Path,
    out: &mut BTreeMap<String, Vec<u8>>,
) -> Result<(), SandboxError> {
    for entry in std::fs::read_dir(dir).map_err(setup)? {
        let entry = entry.map_err(setup)?;
        let ft = entry.file_type().map_err(setup)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if ft.is_dir() {
            if !SKIP_DIRS.contains(&name.as_str()) {
                collect(root, &path, out)?;
            }
        } else if ft.is_file() && !(dir == root && E2B_BUILD_FILES.contains(&name.as_str())) {
            let rel = path
                .strip_prefix(root)
                .map_err(setup)?
                .to_string_lossy()
                .into_owned();
            let mut bytes = Vec::new();
            std::fs::File::open(&path)
                .and_then(|mut f| f.read_to_end(&mut bytes))
                .map_err(setup)?;
            out.insert(rel, bytes);
        }
    }
    Ok(())
}

/// Directories 0777, files 0666 (0777 when executable): through the overlay every project may
/// change any package; its changes land in its own upper layer, never here. (This tree is
/// root's and only reachable through the 0700 cache directory.)
fn open_up(dir: &Path) -> Result<(), SandboxError> {
    rustix::fs::chmod(dir, rustix::fs::Mode::from_raw_mode(0o777)).map_err(setup)?;
    for entry in std::fs::read_dir(dir).map_err(setup)? {
        let entry = entry.map_err(setup)?;
        let ft = entry.file_type().map_err(setup)?;
        let path = entry.path();
        if ft.is_dir() {
            open_up(&path)?;
        } else if ft.is_file() {
            let mode = std::os::unix::fs::PermissionsExt::mode(
                &entry.metadata().map_err(setup)?.permissions(),
            );
            let new = if mode & 0o111 != 0 { 0o777 } else { 0o666 };
            rustix::fs::chmod(&path, rustix::fs::Mode::from_raw_mode(new)).map_err(setup)?;
        }
    }
    Ok(())
}
