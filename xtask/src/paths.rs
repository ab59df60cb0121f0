//! Where things live: the checkout, and the cache that survives between clones.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

pub struct Paths {
    /// The workspace root (the checkout).
    pub root: PathBuf,
    /// Expensive, reusable things: cargo's target dir, stamps. Survives fresh clones.
    pub cache: PathBuf,
    /// cargo's target dir for native builds (rustup's compiler).
    pub target: PathBuf,
    /// cargo's target dir for the wasm build (Debian's compiler + rebuilt std).
    pub wasm_target: PathBuf,
    /// What the server serves: pkg/ (wasm, js, css) and the public/ files.
    pub site: PathBuf,
}

impl Paths {
    pub fn discover() -> Result<Paths> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .context("xtask lives one level below the workspace root")?
            .to_path_buf();
        let cache = match std::env::var_os("CODEFLUX_CACHE_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => {
                let base = std::env::var_os("XDG_CACHE_HOME")
                    .map(PathBuf::from)
                    .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
                    .context("neither CODEFLUX_CACHE_DIR, XDG_CACHE_HOME nor HOME is set")?;
                base.join("codeflux")
            }
        };
        let target = match std::env::var_os("CARGO_TARGET_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => cache.join("target"),
        };
        std::fs::create_dir_all(&target)
            .with_context(|| format!("creating {}", target.display()))?;
        let wasm_target = target.join("wasm");
        let site = root.join("target").join("site");
        Ok(Paths {
            root,
            cache,
            target,
            wasm_target,
            site,
        })
    }

    /// rustup's cargo, with our target dir.
    pub fn cargo(&self) -> Command {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.env("CARGO_TARGET_DIR", &self.target);
        // Make sure a compiler override meant for the wasm build never leaks in.
        cmd.env_remove("RUSTC").env_remove("RUSTC_BOOTSTRAP");
        cmd
    }

    pub fn server_binary(&self, release: bool) -> PathBuf {
        self.target
            .join(if release { "release" } else { "debug" })
            .join("codeflux")
    }

    pub fn node_bin(&self, name: &str) -> PathBuf {
        self.root.join("node_modules").join(".bin").join(name)
    }

    pub fn cargo_home_bin(&self, name: &str) -> PathBuf {
        let home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
            .unwrap_or_else(|| PathBuf::from("/root/.cargo"));
        home.join("bin").join(name)
    }
}
