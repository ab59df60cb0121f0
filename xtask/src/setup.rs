//! `cargo xtask setup`: installs what is missing, and only that. A second run changes nothing
//! and touches no network. Every check runs each time (a stamp is never trusted alone: the
//! machine may have changed underneath it).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::paths::Paths;
use crate::{check, step};

/// Debian packages the project needs (see ARCHITECTURE.md, "Build and tooling").
const APT_PACKAGES: &[&str] = &[
    "rustc-web",       // rustc 1.96 that builds std for wasm32 (no rustup target needed)
    "rust-web-src",    // std's source for -Zbuild-std, same version as rustc-web
    "rust-web-llvm",   // rust-lld
    "rust-web-clippy", // clippy for the wasm32 lint
    "lld-22",          // what rust-lld points to (rust-web-llvm does not depend on it)
    "chromium",        // browser tests
    "chromium-driver", // WebDriver for the browser tests
    "bubblewrap",      // sandboxes for the agent's commands
    "iproute2",        // `ip`: loopback in each project's network namespace
    "util-linux",      // unshare, nsenter, setpriv, prlimit
    "mount",           // mount/umount: project disks (loop) and workspace overlays
    "e2fsprogs",       // mkfs.ext4: each project's disk image
    "perl-base",       // the sandbox tests' syscall probes (essential in Debian, checked anyway)
    "nginx-light",     // the deployment test: TLS reverse proxy in front of the app
    "openssl",         // the deployment test's certificate
];

pub fn ensure(paths: &Paths) -> Result<()> {
    step("setup: Debian packages", ensure_apt)?;
    step("setup: wasm compiler", ensure_wasm_compiler)?;
    step("setup: wasm-bindgen-cli", || ensure_wasm_bindgen(paths))?;
    step("setup: npm tools", || ensure_npm(paths))?;
    Ok(())
}

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

fn package_version(pkg: &str) -> Option<String> {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", pkg])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|v| !v.is_empty())
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program} >/dev/null 2>&1")])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// apt-get, as root directly or through sudo.
fn apt_get(args: &[&str]) -> Result<()> {
    let mut cmd = if is_root() {
        Command::new("apt-get")
    } else if have("sudo") {
        let mut c = Command::new("sudo");
        c.arg("apt-get");
        c
    } else {
        bail!(
            "installing Debian packages needs root; run as root or install: {}",
            APT_PACKAGES.join(" ")
        );
    };
    cmd.args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("NEEDRESTART_MODE", "a");
    check(&mut cmd)
}

fn ensure_apt() -> Result<()> {
    let mut missing: Vec<&str> = APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| !installed(p))
        .collect();
    if !have("node") || !have("npm") {
        missing.extend(["nodejs", "npm"]);
    }
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing {}", missing.join(" "));
    apt_get(&["update", "-q"])?;
    let mut args = vec!["install", "-y", "-q"];
    args.extend(missing.iter().copied());
    apt_get(&args)
}

/// Debian's rustc-web and rust-web-src must be the same version, and std's source must sit
/// where -Zbuild-std looks for it.
fn ensure_wasm_compiler() -> Result<()> {
    let rustc = package_version("rustc-web");
    let src = package_version("rust-web-src");
    if rustc != src {
        eprintln!("xtask: rustc-web {rustc:?} and rust-web-src {src:?} differ; reinstalling both");
        let version = rustc.context("rustc-web has no version")?;
        apt_get(&[
            "install",
            "-y",
            "-q",
            "--allow-downgrades",
            &format!("rustc-web={version}"),
            &format!("rust-web-src={version}"),
        ])?;
    }
    let sysroot = Command::new("/usr/bin/rustc")
        .args(["--print", "sysroot"])
        .output()
        .context("running /usr/bin/rustc (Debian's rustc-web)")?;
    let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_owned();
    let lock = Path::new(&sysroot).join("lib/rustlib/src/rust/library/Cargo.lock");
    if !lock.exists() {
        bail!(
            "std's source is missing at {} (package rust-web-src)",
            lock.display()
        );
    }
    let lld = Command::new("sh")
        .args(["-c", "readlink -f \"$(command -v rust-lld)\""])
        .output()?;
    let lld = String::from_utf8_lossy(&lld.stdout).trim().to_owned();
    if lld.is_empty() || !Path::new(&lld).exists() {
        bail!("rust-lld does not resolve to a linker (packages rust-web-llvm and lld-22)");
    }
    Ok(())
}

/// The wasm-bindgen version pinned in Cargo.lock.
pub fn locked_wasm_bindgen(paths: &Paths) -> Result<String> {
    let lock =
        std::fs::read_to_string(paths.root.join("Cargo.lock")).context("reading Cargo.lock")?;
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line == "name = \"wasm-bindgen\""
            && let Some(v) = lines.next().and_then(|l| l.strip_prefix("version = "))
        {
            return Ok(v.trim_matches('"').to_owned());
        }
    }
    bail!("Cargo.lock has no wasm-bindgen")
}

fn ensure_wasm_bindgen(paths: &Paths) -> Result<()> {
    let want = locked_wasm_bindgen(paths)?;
    let bin = paths.cargo_home_bin("wasm-bindgen");
    let have = Command::new(&bin)
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    if have == format!("wasm-bindgen {want}") {
        return Ok(());
    }
    eprintln!("xtask: installing wasm-bindgen-cli {want} (found {have:?})");
    // Not --locked: the CLI's own lock file can name versions the registry no longer has.
    // A target dir in the cache lets an interrupted install resume.
    check(
        Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args(["install", "wasm-bindgen-cli", "--force", "--version"])
            .arg(format!("={want}"))
            .arg("--target-dir")
            .arg(paths.cache.join("install-target"))
            .env_remove("RUSTC")
            .env_remove("CARGO_TARGET_DIR"),
    )
}

fn ensure_npm(paths: &Paths) -> Result<()> {
    let lock =
        std::fs::read(paths.root.join("package-lock.json")).context("reading package-lock.json")?;
    let stamp = paths.root.join("node_modules/.codeflux-setup-stamp");
    let fresh = std::fs::read(&stamp).map(|s| s == lock).unwrap_or(false)
        && paths.node_bin("tailwindcss").exists()
        && paths.node_bin("wasm-opt").exists();
    if !fresh {
        check(
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(&paths.root),
        )?;
        std::fs::write(&stamp, &lock)?;
    }
    let out = Command::new(paths.node_bin("wasm-opt"))
        .arg("--version")
        .output()?;
    let version = String::from_utf8_lossy(&out.stdout);
    if !version.contains("version 132") {
        bail!("wasm-opt from npm binaryen should be version 132, found {version:?}");
    }
    Ok(())
}

/// cargo-nextest, the test runner `cargo xtask test` uses.
pub fn ensure_nextest(paths: &Paths) -> Result<()> {
    let ok = paths
        .cargo()
        .args(["nextest", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if ok {
        return Ok(());
    }
    step("setup: cargo-nextest", || {
        check(
            Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
                .args(["install", "cargo-nextest", "--locked"])
                .arg("--target-dir")
                .arg(paths.cache.join("install-target"))
                .env_remove("CARGO_TARGET_DIR"),
        )
    })
}
