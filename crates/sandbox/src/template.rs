//! Templates: prepared once per machine (sources + `npm ci`), cloned per project cheaply.
//!
//! A prepared template lives in the cache as `<name>-<hash of its sources>`, its installed
//! files read-only and owned by root. A project's clone gets private copies of the sources and
//! of `node_modules`' dot entries (`.package-lock.json`, `.bin`, `.vite`, ...), and hard links
//! for every package file: 0.3 s and a few MB instead of 160-440 MB per project. A package
//! update in one project replaces files (new inodes) and never changes the template or
//! another project; an in-place write to a linked file fails (read-only) instead.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use codeflux_protocol::Template;
use sha2::{Digest, Sha256};

use crate::SandboxError;
use crate::workspace::{SKIP_DIRS, Workspace};

const STAMP: &str = ".codeflux-prepared";
/// A stamp in a clone: the package.json its node_modules were installed for.
pub const INSTALLED_STAMP: &str = "node_modules/.codeflux-installed";

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

    /// Where the prepared copy of the current sources lives.
    pub fn prepared_dir(&self, template: Template) -> Result<PathBuf, SandboxError> {
        let files = self.source_files(template)?;
        let mut h = Sha256::new();
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
        let tmp = self.cache.join(format!(
            ".{}-tmp-{}",
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(setup)?;
        for (path, bytes) in self.source_files(template)? {
            let dest = tmp.join(&path);
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent).map_err(setup)?;
            }
            std::fs::write(&dest, bytes).map_err(setup)?;
        }
        let started = std::time::Instant::now();
        let out = std::process::Command::new("npm")
            .args([
                "ci",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                "--prefer-offline",
            ])
            .current_dir(&tmp)
            .env("NEXT_TELEMETRY_DISABLED", "1")
            .output()
            .map_err(|e| {
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
        make_read_only(&tmp.join("node_modules"))?;
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

    /// Fills an empty workspace from the prepared template. Blocking.
    pub fn clone_into(
        &self,
        template: Template,
        ws: &Workspace,
        owner: Option<(u32, u32)>,
    ) -> Result<(), SandboxError> {
        let prepared = self.prepare(template)?;
        for (path, bytes) in self.source_files(template)? {
            ws.write_bytes(&path, &bytes)?;
        }
        let src = prepared.join("node_modules");
        let dst = ws.root().join("node_modules");
        std::fs::create_dir_all(&dst).map_err(setup)?;
        chown(&dst, owner)?;
        for entry in std::fs::read_dir(&src).map_err(setup)? {
            let entry = entry.map_err(setup)?;
            let name = entry.file_name();
            let to = dst.join(&name);
            if name.to_string_lossy().starts_with('.') {
                copy_private(&entry.path(), &to, owner)?;
            } else {
                link_tree(&entry.path(), &to, owner)?;
            }
        }
        let pkg = ws.read("package.json").unwrap_or_default();
        ws.write(INSTALLED_STAMP, &pkg)?;
        Ok(())
    }
}

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
        } else if ft.is_file() {
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

fn chown(path: &Path, owner: Option<(u32, u32)>) -> Result<(), SandboxError> {
    if let Some((u, g)) = owner {
        rustix::fs::chownat(
            rustix::fs::CWD,
            path,
            Some(rustix::process::Uid::from_raw(u)),
            Some(rustix::process::Gid::from_raw(g)),
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| setup(format!("chown {}: {e}", path.display())))?;
    }
    Ok(())
}

/// Files read-only (directories stay writable for root only): an in-place write through a
/// hard link then fails instead of changing the template.
fn make_read_only(dir: &Path) -> Result<(), SandboxError> {
    for entry in std::fs::read_dir(dir).map_err(setup)? {
        let entry = entry.map_err(setup)?;
        let ft = entry.file_type().map_err(setup)?;
        let path = entry.path();
        if ft.is_dir() {
            make_read_only(&path)?;
        } else if ft.is_file() {
            let mode = entry.metadata().map_err(setup)?.mode_bits() & 0o555;
            rustix::fs::chmod(&path, rustix::fs::Mode::from_raw_mode(mode)).map_err(setup)?;
        }
    }
    Ok(())
}

trait ModeBits {
    fn mode_bits(&self) -> u32;
}

impl ModeBits for std::fs::Metadata {
    fn mode_bits(&self) -> u32 {
        std::os::unix::fs::PermissionsExt::mode(&self.permissions())
    }
}

/// Directories recreated (owned by the project), files hard-linked, symlinks recreated.
fn link_tree(from: &Path, to: &Path, owner: Option<(u32, u32)>) -> Result<(), SandboxError> {
    let ft = std::fs::symlink_metadata(from).map_err(setup)?.file_type();
    if ft.is_symlink() {
        let target = std::fs::read_link(from).map_err(setup)?;
        std::os::unix::fs::symlink(&target, to).map_err(setup)?;
        return chown(to, owner);
    }
    if ft.is_file() {
        return std::fs::hard_link(from, to)
            .map_err(|e| setup(format!("linking {}: {e}", from.display())));
    }
    std::fs::create_dir_all(to).map_err(setup)?;
    chown(to, owner)?;
    for entry in std::fs::read_dir(from).map_err(setup)? {
        let entry = entry.map_err(setup)?;
        link_tree(&entry.path(), &to.join(entry.file_name()), owner)?;
    }
    Ok(())
}

/// A private, writable copy owned by the project.
fn copy_private(from: &Path, to: &Path, owner: Option<(u32, u32)>) -> Result<(), SandboxError> {
    let meta = std::fs::symlink_metadata(from).map_err(setup)?;
    let ft = meta.file_type();
    if ft.is_symlink() {
        let target = std::fs::read_link(from).map_err(setup)?;
        std::os::unix::fs::symlink(&target, to).map_err(setup)?;
    } else if ft.is_file() {
        std::fs::copy(from, to).map_err(setup)?;
        let mode = meta.mode_bits() | 0o200;
        rustix::fs::chmod(to, rustix::fs::Mode::from_raw_mode(mode)).map_err(setup)?;
    } else if ft.is_dir() {
        std::fs::create_dir_all(to).map_err(setup)?;
        for entry in std::fs::read_dir(from).map_err(setup)? {
            let entry = entry.map_err(setup)?;
            copy_private(&entry.path(), &to.join(entry.file_name()), owner)?;
        }
    }
    chown(to, owner)
}
