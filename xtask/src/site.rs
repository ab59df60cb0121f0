//! The front end: wasm (Debian's rustc + rebuilt std), JS glue, size optimisation, CSS, and
//! the public files, assembled into target/site.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::paths::Paths;
use crate::{check, step};

const WASM_TARGET: &str = "wasm32-unknown-unknown";
const WASM_PROFILE: &str = "wasm-release";

/// cargo with Debian's compiler, for the wasm32 target.
fn wasm_cargo(paths: &Paths) -> Command {
    let mut cmd = paths.cargo();
    cmd.env("RUSTC", "/usr/bin/rustc")
        .env("RUSTC_BOOTSTRAP", "1")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("RUSTFLAGS")
        .env_remove("LEPTOS_OUTPUT_NAME")
        .current_dir(&paths.root);
    cmd
}

pub fn build(paths: &Paths) -> Result<()> {
    let pkg = paths.site.join("pkg");
    std::fs::create_dir_all(&pkg)?;
    step("front end: wasm (wasm-release, -Zbuild-std)", || {
        check(
            wasm_cargo(paths)
                .args([
                    "build",
                    "-p",
                    "frontend",
                    "--lib",
                    "--target",
                    WASM_TARGET,
                    "--profile",
                    WASM_PROFILE,
                    "-Zbuild-std=std,panic_abort",
                    "--target-dir",
                ])
                .arg(&paths.wasm_target),
        )
    })?;
    let raw = paths
        .wasm_target
        .join(WASM_TARGET)
        .join(WASM_PROFILE)
        .join("frontend.wasm");
    let stamp_path = pkg.join(".source-stamp");
    let stamp = file_stamp(&raw)?;
    let up_to_date = std::fs::read_to_string(&stamp_path).ok().as_deref() == Some(stamp.as_str())
        && pkg.join("frontend_bg.wasm").exists()
        && pkg.join("frontend.js").exists();
    if !up_to_date {
        step("front end: wasm-bindgen", || {
            check(
                Command::new(paths.cargo_home_bin("wasm-bindgen"))
                    .args([
                        "--target",
                        "web",
                        "--no-typescript",
                        "--out-name",
                        "frontend",
                        "--out-dir",
                    ])
                    .arg(&pkg)
                    .arg(&raw),
            )
        })?;
        let wasm = pkg.join("frontend_bg.wasm");
        step("front end: wasm-opt -Oz", || {
            check(
                Command::new(paths.node_bin("wasm-opt"))
                    .arg("-Oz")
                    .arg(&wasm)
                    .arg("-o")
                    .arg(&wasm),
            )
        })?;
        std::fs::write(&stamp_path, &stamp)?;
    }
    step("front end: tailwind css", || {
        check(
            Command::new(paths.node_bin("tailwindcss"))
                .args(["-i", "style/main.css", "-o"])
                .arg(pkg.join("app.css"))
                .arg("--minify")
                .current_dir(&paths.root),
        )
    })?;
    step("front end: precompress (brotli 11, gzip 9)", || {
        // Node's zlib: no extra tool. The server serves these instead of compressing on the fly.
        check(
            Command::new("node")
                .arg("-e")
                .arg(
                    "const z=require('zlib'),fs=require('fs');\
                     for(const f of process.argv.slice(1)){const d=fs.readFileSync(f);\
                     fs.writeFileSync(f+'.br',z.brotliCompressSync(d,{params:{[z.constants.BROTLI_PARAM_QUALITY]:11,[z.constants.BROTLI_PARAM_SIZE_HINT]:d.length}}));\
                     fs.writeFileSync(f+'.gz',z.gzipSync(d,{level:9}));}",
                )
                .arg(pkg.join("frontend_bg.wasm"))
                .arg(pkg.join("frontend.js"))
                .arg(pkg.join("app.css")),
        )
    })?;
    copy_dir(&paths.root.join("public"), &paths.site)?;
    Ok(())
}

/// Size and modification time of a file, as a cheap change marker.
fn file_stamp(path: &Path) -> Result<String> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("{} was not built", path.display()))?;
    let mtime = meta
        .modified()?
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    Ok(format!("{} {mtime}", meta.len()))
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            std::fs::create_dir_all(&dest)?;
            copy_dir(&entry.path(), &dest)?;
        } else {
            std::fs::copy(entry.path(), &dest)?;
        }
    }
    Ok(())
}

/// clippy over the front end as it is compiled for wasm32 (Debian's clippy-driver, matching
/// Debian's compiler).
pub fn clippy_wasm(paths: &Paths) -> Result<()> {
    check(
        wasm_cargo(paths)
            .env("RUSTC_WORKSPACE_WRAPPER", "/usr/bin/clippy-driver")
            .env(
                "CLIPPY_ARGS",
                "-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__",
            )
            .args([
                "check",
                "-p",
                "frontend",
                "-p",
                "app",
                "--lib",
                "--target",
                WASM_TARGET,
                "--profile",
                WASM_PROFILE,
                "-Zbuild-std=std,panic_abort",
                "--target-dir",
            ])
            .arg(paths.wasm_target.join("clippy")),
    )
}

fn gzip_size(path: &Path) -> Result<u64> {
    let out = Command::new("sh")
        .arg("-c")
        .arg("gzip -9 -c \"$1\" | wc -c")
        .arg("sh")
        .arg(path)
        .output()?;
    if !out.status.success() {
        bail!("gzip failed for {}", path.display());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
}

/// Prints the size of each front-end file, raw and gzipped.
pub fn print_sizes(paths: &Paths) -> Result<()> {
    let pkg = paths.site.join("pkg");
    let files: Vec<PathBuf> = ["frontend_bg.wasm", "frontend.js", "app.css"]
        .iter()
        .map(|f| pkg.join(f))
        .collect();
    let (mut raw_total, mut gz_total) = (0, 0);
    println!("front end (target/site/pkg)          raw bytes   gzip -9 bytes");
    for f in &files {
        let raw = std::fs::metadata(f)?.len();
        let gz = gzip_size(f)?;
        raw_total += raw;
        gz_total += gz;
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        println!("  {name:<34} {raw:>9}   {gz:>13}");
    }
    println!(
        "  {:<34} {raw_total:>9}   {gz_total:>13}",
        "first load (wasm + js + css)"
    );
    Ok(())
}
