//! `cargo xtask <command>`: everything needed to set up, build, run and test CodeFlux on a
//! fresh machine, idempotently. See the README and ARCHITECTURE.md ("Build and tooling").
//!
//! Commands: setup, build [--dev], run [--dev] [-- server args], test [-- nextest args],
//! lint, bench, seed, migrate <args>.

mod paths;
mod setup;
mod site;

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::paths::Paths;

const HELP: &str = "\
cargo xtask <command>

  setup           install what is missing (Debian packages, wasm-bindgen-cli, npm tools)
  build [--dev]   build the server (release unless --dev) and the front end into target/site
  run [--dev]     setup + build, then serve on http://127.0.0.1:3000 (LEPTOS_SITE_ADDR to change)
                  arguments after `--` go to the server (`cargo xtask run -- --help`)
  test            setup + build the front end, then run every test (cargo nextest)
  lint            rustfmt check and clippy -D warnings, native and wasm32
  bench           print performance figures
  seed            fill the database with sample projects
  migrate <cmd>   run the migrator: up, down, status, fresh, refresh, reset
";

fn main() {
    if let Err(e) = real_main() {
        eprintln!("xtask: error: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cmd, rest) = match args.split_first() {
        Some((c, r)) => (c.as_str(), r.to_vec()),
        None => {
            print!("{HELP}");
            return Ok(());
        }
    };
    let paths = Paths::discover()?;
    let dev = rest.iter().any(|a| a == "--dev");
    let passthrough: Vec<String> = rest
        .iter()
        .skip_while(|a| a.as_str() != "--")
        .skip(1)
        .cloned()
        .collect();
    match cmd {
        "setup" => setup::ensure(&paths),
        "build" => {
            setup::ensure(&paths)?;
            build_server(&paths, !dev)?;
            site::build(&paths)
        }
        "run" => run(&paths, !dev, &passthrough),
        "test" => test(&paths, &passthrough),
        "lint" => lint(&paths),
        "bench" => bench(&paths),
        "seed" => {
            setup::ensure(&paths)?;
            build_server(&paths, false)?;
            let bin = paths.server_binary(false);
            exec(Command::new(bin).arg("seed").current_dir(&paths.root))
        }
        "migrate" => {
            let status = paths
                .cargo()
                .args(["run", "--quiet", "-p", "migration", "--"])
                .args(&rest)
                .current_dir(&paths.root)
                .status()?;
            std::process::exit(status.code().unwrap_or(1));
        }
        "help" | "-h" | "--help" => {
            print!("{HELP}");
            Ok(())
        }
        other => bail!("unknown command `{other}`\n\n{HELP}"),
    }
}

fn build_server(paths: &Paths, release: bool) -> Result<()> {
    let mut cmd = paths.cargo();
    cmd.args(["build", "-p", "server", "-p", "migration"]);
    if release {
        cmd.arg("--release");
    }
    step(
        &format!("server ({})", if release { "release" } else { "dev" }),
        || check(cmd.current_dir(&paths.root)),
    )
}

/// Installs the project templates' packages once per machine (a no-op when prepared).
fn prepare_templates(paths: &Paths, release: bool) -> Result<()> {
    let bin = paths.server_binary(release);
    step("templates (npm ci once per machine)", || {
        check(
            Command::new(&bin)
                .arg("prepare-templates")
                .current_dir(&paths.root),
        )
    })
}

fn run(paths: &Paths, release: bool, server_args: &[String]) -> Result<()> {
    setup::ensure(paths)?;
    build_server(paths, release)?;
    site::build(paths)?;
    prepare_templates(paths, release)?;
    let bin = paths.server_binary(release);
    eprintln!("xtask: starting {}", bin.display());
    exec(Command::new(bin).args(server_args).current_dir(&paths.root))
}

fn test(paths: &Paths, extra: &[String]) -> Result<()> {
    setup::ensure(paths)?;
    site::build(paths)?;
    build_server(paths, false)?;
    prepare_templates(paths, false)?;
    setup::ensure_nextest(paths)?;
    let mut cmd = paths.cargo();
    cmd.args([
        "nextest",
        "run",
        "--workspace",
        "--exclude",
        "frontend",
        "--no-fail-fast",
    ])
    .args(extra)
    .env("CODEFLUX_SITE_BUILT", "1")
    .current_dir(&paths.root);
    // nextest prints its summary last; that is the last line of `cargo xtask test`.
    let status = cmd.status().context("running cargo nextest")?;
    if !status.success() {
        std::process::exit(status.code().unwrap_or(1));
    }
    Ok(())
}

fn lint(paths: &Paths) -> Result<()> {
    setup::ensure(paths)?;
    step("rustfmt --check", || {
        check(
            paths
                .cargo()
                .args(["fmt", "--all", "--", "--check"])
                .current_dir(&paths.root),
        )
    })?;
    step("clippy (native)", || {
        check(
            paths
                .cargo()
                .args([
                    "clippy",
                    "--workspace",
                    "--exclude",
                    "frontend",
                    "--all-targets",
                    "--",
                    "-D",
                    "warnings",
                ])
                .current_dir(&paths.root),
        )
    })?;
    step("clippy (wasm32, front end)", || site::clippy_wasm(paths))
}

fn bench(paths: &Paths) -> Result<()> {
    setup::ensure(paths)?;
    site::build(paths)?;
    build_server(paths, false)?;
    prepare_templates(paths, false)?;
    site::print_sizes(paths)?;
    check(
        paths
            .cargo()
            .args([
                "run",
                "--quiet",
                "-p",
                "codeflux-test-support",
                "--bin",
                "codeflux-bench",
            ])
            .current_dir(&paths.root),
    )
}

/// Runs `cmd`, failing with its command line when it does not succeed.
pub fn check(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{:?} failed ({status})", cmd.get_program());
    }
    Ok(())
}

/// Replaces this process with `cmd` (so signals reach the server directly).
fn exec(cmd: &mut Command) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let err = cmd.exec();
    Err(err).context("starting the server")
}

/// Runs one named step and reports its duration.
pub fn step(name: &str, f: impl FnOnce() -> Result<()>) -> Result<()> {
    let t0 = std::time::Instant::now();
    eprintln!("xtask: {name} ...");
    let r = f();
    match &r {
        Ok(()) => eprintln!("xtask: {name} done in {:.1} s", t0.elapsed().as_secs_f64()),
        Err(_) => eprintln!(
            "xtask: {name} FAILED after {:.1} s",
            t0.elapsed().as_secs_f64()
        ),
    }
    r.with_context(|| format!("step `{name}`"))
}
