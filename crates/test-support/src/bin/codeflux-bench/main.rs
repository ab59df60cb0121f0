//! `cargo xtask bench`: prints performance figures (no assertions).
//!
//! - sandbox create -> preview ready, for each template (cold: a new project's clone)
//! - edit -> preview updated (a file written from the host until the dev server serves it)
//! - resident memory per live sandbox (processes in its cgroup) and how many fit in 24 GiB
//! - the context sent to the model over a scripted 10-step agent run (characters, ~tokens)
//! - hardening: time added per sandboxed command, another preview's latency beside a CPU hog
//!   (ratio), the server's memory while a dev server floods its output
//! - the app check before a run finishes (type check, dev server, page load in Chromium): its
//!   time and the sandbox's peak memory while it runs
//! - cluster: run throughput with 1, 2 and 3 nodes on one PostgreSQL, takeover after SIGKILL
//!   (`cluster.rs`)

mod cluster;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use async_trait::async_trait;
use codeflux_agent::{AgentConfig, EventSink, Task};
use codeflux_llm::{ClientOptions, Endpoint, LlmClient};
use codeflux_protocol::{RunEvent, Template};
use codeflux_sandbox::local::{LocalConfig, LocalProvider};
use codeflux_sandbox::{PreviewState, SandboxProvider};
use codeflux_test_support::scripted_llm::{ScriptedLlm, Turn};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

fn root() -> PathBuf {
    codeflux_test_support::workspace_root(env!("CARGO_MANIFEST_DIR"))
}

/// GET `path` from the project's dev server; returns the body.
async fn fetch(provider: &LocalProvider, project: Uuid, path: &str) -> Result<String> {
    let mut s = provider.connect_preview(project).await?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut body = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut body)).await??;
    Ok(String::from_utf8_lossy(&body).into_owned())
}

async fn wait_for(
    provider: &LocalProvider,
    project: Uuid,
    path: &str,
    needle: &str,
    limit: Duration,
) -> Result<Duration> {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if let PreviewState::Failed(why) = provider.preview_state(project) {
            bail!("the preview failed: {why}");
        }
        if provider.preview_state(project) == PreviewState::Ready
            && let Ok(body) = fetch(provider, project, path).await
            && body.starts_with("HTTP/1.1 200")
            && body.contains(needle)
        {
            return Ok(t0.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    bail!("{needle} did not show in {path} within {limit:?}")
}

async fn sandbox_figures() -> Result<()> {
    let data = tempfile::tempdir()?;
    let cfg = LocalConfig::new(
        data.path().to_path_buf(),
        root().join("sandbox-templates"),
        3000,
    )
    .with_host_npm();
    let provider = LocalProvider::new(cfg)?;
    provider.prepare_templates().await?;
    println!("sandbox (local backend, bubblewrap + netns + cgroups)");
    let mut vite_rss = 0u64;
    for template in Template::ALL {
        let (page, path) = match template {
            Template::ViteReact => ("src/App.tsx", "/src/App.tsx"),
            Template::NextJs => ("src/app/page.tsx", "/"),
        };
        let project = Uuid::new_v4();
        let t0 = Instant::now();
        let sandbox = provider.open(project, template, None).await?;
        let opened = t0.elapsed();
        let ready =
            wait_for(&provider, project, "/", "<", Duration::from_secs(180)).await? + opened;
        // First view of the page (Next compiles it on demand).
        let first = wait_for(&provider, project, path, "", Duration::from_secs(180)).await?;
        let marker = format!("BENCH-{}", Uuid::new_v4().simple());
        let content = match template {
            Template::ViteReact => {
                format!("export default function App() {{ return <h1>{marker}</h1>; }}\n")
            }
            Template::NextJs => {
                format!("export default function Page() {{ return <h1>{marker}</h1>; }}\n")
            }
        };
        let t1 = Instant::now();
        sandbox.write_file(page, &content).await?;
        let updated = wait_for(&provider, project, path, &marker, Duration::from_secs(120)).await?;
        let _ = t1;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mem = provider.sandbox_rss(project).unwrap_or(0);
        if template == Template::ViteReact {
            vite_rss = mem;
        }
        println!(
            "  {:<10} create -> preview ready {:>6.2} s (disk + overlay + netns + dev server; of which open {:.2} s)",
            template.as_str(),
            ready.as_secs_f64(),
            opened.as_secs_f64()
        );
        println!(
            "  {:<10} first page load        {:>6.2} s",
            template.as_str(),
            first.as_secs_f64()
        );
        println!(
            "  {:<10} edit -> preview updated {:>6.3} s",
            template.as_str(),
            updated.as_secs_f64()
        );
        println!(
            "  {:<10} RSS of the live sandbox {:>6} MB",
            template.as_str(),
            mem / (1024 * 1024)
        );
        for pass in ["first", "again"] {
            let (report, took, peak) = measure_check(&provider, project, sandbox.as_ref()).await?;
            let items: Vec<String> = report
                .items
                .iter()
                .map(|i| format!("{} {} ms {:?}", i.name, i.ms, i.status))
                .collect();
            println!(
                "  {:<10} check ({pass}) {:>6.2} s: {}; peak RSS {} MB (+{} MB over the idle sandbox)",
                template.as_str(),
                took.as_secs_f64(),
                items.join(", "),
                peak / (1024 * 1024),
                peak.saturating_sub(mem) / (1024 * 1024)
            );
        }
        drop(sandbox);
        provider.stop(project).await;
    }
    let budget = 20u64 * 1024 * 1024 * 1024;
    if let Some(fit) = budget.checked_div(vite_rss) {
        println!("  live Vite sandboxes in 24 GiB (20 GiB for sandboxes): about {fit}");
    }
    Ok(())
}

struct Quiet;

#[async_trait]
impl EventSink for Quiet {
    async fn emit(&self, _: RunEvent) {}
}

async fn agent_figures() -> Result<()> {
    let llm = ScriptedLlm::start().await?;
    let mut turns = Vec::new();
    for i in 0..10 {
        let file = format!("src/components/Part{i}.tsx");
        let content = format!(
            "export function Part{i}() {{\n{}  return <section>part {i}</section>;\n}}\n",
            "  // some realistic component code\n".repeat(120)
        );
        turns.push(match i % 3 {
            0 => Turn::tool(
                "createOrUpdateFiles",
                serde_json::json!({"files": [{"path": file, "content": content}]}),
            ),
            1 => Turn::tool(
                "readFiles",
                serde_json::json!({"files": ["src/App.tsx", "package.json"]}),
            ),
            _ => Turn::tool(
                "terminal",
                serde_json::json!({"command": "ls -R src | head -50"}),
            ),
        });
    }
    turns.push(Turn::text("<task_summary>Ten steps.</task_summary>"));
    llm.push(turns);
    let client = LlmClient::new(
        Endpoint {
            provider: "custom".into(),
            base_url: llm.base_url.clone(),
            api_key: None,
            model: "scripted".into(),
        },
        ClientOptions::default(),
    )?;
    let data = tempfile::tempdir()?;
    let provider = LocalProvider::new(LocalConfig {
        dev_servers: false,
        ..LocalConfig::new(
            data.path().to_path_buf(),
            root().join("sandbox-templates"),
            3000,
        )
        .with_host_npm()
    })?;
    let sandbox = provider
        .open(Uuid::new_v4(), Template::ViteReact, None)
        .await?;
    let task = Task {
        template: Template::ViteReact,
        history: Vec::new(),
        prompt: "Build a dashboard with ten sections".into(),
        follow_up: false,
    };
    let out = codeflux_agent::run(
        &client,
        sandbox.as_ref(),
        &Quiet,
        &task,
        &AgentConfig::default(),
    )
    .await?;
    let sizes: Vec<usize> = llm
        .agent_requests()
        .iter()
        .map(|r| {
            serde_json::to_string(&r.body["messages"])
                .map(|s| s.len())
                .unwrap_or(0)
        })
        .collect();
    let total: usize = sizes.iter().sum();
    println!("agent (scripted 10-step run, 11 model calls with tools + title + reply)");
    println!("  characters of messages sent per call: {sizes:?}");
    println!(
        "  total {} characters ~ {} prompt tokens (4 characters per token); largest call ~ {} tokens",
        total,
        total / 4,
        sizes.iter().max().copied().unwrap_or(0) / 4
    );
    println!(
        "  agent's own tally: {} characters over {} requests, {} iterations",
        out.chars_sent, out.requests, out.iterations
    );
    Ok(())
}

/// Runs the app check once; its report, wall time and the sandbox's peak RSS meanwhile
/// (sampled every 50 ms).
async fn measure_check(
    provider: &LocalProvider,
    project: Uuid,
    sandbox: &dyn codeflux_sandbox::Sandbox,
) -> Result<(codeflux_protocol::CheckReport, Duration, u64)> {
    let t0 = Instant::now();
    let check = sandbox.check();
    tokio::pin!(check);
    let mut peak = 0u64;
    let report = loop {
        tokio::select! {
            r = &mut check => break r?,
            () = tokio::time::sleep(Duration::from_millis(50)) => {
                peak = peak.max(provider.sandbox_rss(project).unwrap_or(0));
            }
        }
    };
    let report = report.context("the local sandbox checks")?;
    Ok((report, t0.elapsed(), peak))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v.get(i).copied().unwrap_or(0.0)
}

fn own_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .unwrap_or(0.0)
        / 1024.0
}

/// Milliseconds to GET `path` from the project's dev server, `n` times.
async fn latencies(provider: &LocalProvider, project: Uuid, path: &str, n: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t0 = Instant::now();
        if fetch(provider, project, path).await.is_ok() {
            out.push(t0.elapsed().as_secs_f64() * 1000.0);
        }
    }
    out
}

async fn hardening_figures() -> Result<()> {
    let data = tempfile::tempdir()?;
    let base = LocalConfig::new(
        data.path().to_path_buf(),
        root().join("sandbox-templates"),
        3000,
    )
    .with_host_npm();
    println!("hardening (seccomp, disk image, cgroup leaves and CPU quota, bounded logs)");

    // Time added per command: a sandboxed `true` against `sh -c true` on the host.
    let provider = LocalProvider::new(LocalConfig {
        dev_servers: false,
        ..base.clone()
    })?;
    let sb = provider
        .open(Uuid::new_v4(), Template::ViteReact, None)
        .await?;
    let opts = codeflux_sandbox::RunOptions::default();
    let mut sandboxed = Vec::new();
    for i in 0..33 {
        let t0 = Instant::now();
        sb.run("true", &opts, None).await?;
        if i >= 3 {
            sandboxed.push(t0.elapsed().as_secs_f64() * 1000.0);
        }
    }
    let mut host = Vec::new();
    for _ in 0..30 {
        let t0 = Instant::now();
        tokio::process::Command::new("/bin/sh")
            .args(["-c", "true"])
            .status()
            .await?;
        host.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    let (m, h) = (median(sandboxed.clone()), median(host));
    println!(
        "  a sandboxed command (`true`): median {m:.1} ms, p90 {:.1} ms; `sh -c true` on the host {h:.1} ms: {:.1} ms added",
        percentile(sandboxed, 0.9),
        m - h
    );
    drop(sb);
    provider.stop_all().await;

    // Another preview's latency beside a project spinning every core, with the CPU quota and
    // (for comparison) without any.
    for cpus in [base.cpus, 0.0] {
        let provider = LocalProvider::new(LocalConfig {
            cpus,
            ..base.clone()
        })?;
        let (quiet, busy) = (Uuid::new_v4(), Uuid::new_v4());
        let _q = provider.open(quiet, Template::ViteReact, None).await?;
        let b = provider.open(busy, Template::ViteReact, None).await?;
        for p in [quiet, busy] {
            wait_for(&provider, p, "/src/App.tsx", "", Duration::from_secs(180)).await?;
        }
        latencies(&provider, quiet, "/src/App.tsx", 20).await;
        let idle = median(latencies(&provider, quiet, "/src/App.tsx", 40).await);
        let hog = tokio::spawn(async move {
            b.run(
                "for i in $(seq 16); do setsid timeout 25 sh -c 'while :; do :; done' & done; wait",
                &codeflux_sandbox::RunOptions::default(),
                None,
            )
            .await
        });
        tokio::time::sleep(Duration::from_secs(3)).await;
        let loaded = median(latencies(&provider, quiet, "/src/App.tsx", 40).await);
        let quota = if cpus > 0.0 {
            format!("CODEFLUX_SANDBOX_CPUS={cpus}")
        } else {
            "no CPU quota, cgroup weight only".to_owned()
        };
        println!(
            "  another preview beside a CPU hog (16 spinners, {quota}): median {idle:.1} ms idle, {loaded:.1} ms beside the hog: ratio {:.2}",
            loaded / idle.max(0.001)
        );
        hog.abort();
        provider.stop_all().await;
    }

    // The server's memory while a dev server prints without end (and without newlines).
    let provider = LocalProvider::new(base.clone())?;
    let id = Uuid::new_v4();
    let store = codeflux_sandbox::template::TemplateStore::new(
        base.templates_dir.clone(),
        base.template_cache.clone(),
    );
    let mut files = store.source_texts(Template::ViteReact)?;
    let cfg = files.get("vite.config.ts").cloned().unwrap_or_default();
    files.insert(
        "vite.config.ts".into(),
        format!("setInterval(() => process.stdout.write('x'.repeat(65536)), 1);\n{cfg}"),
    );
    let _f = provider.open(id, Template::ViteReact, Some(&files)).await?;
    let t0 = Instant::now();
    while provider.dev_server_log_bytes(id).1 < 4 << 20 {
        if t0.elapsed() > Duration::from_secs(60) {
            bail!("the flood did not start");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (rss0, read0) = (own_rss_mb(), provider.dev_server_log_bytes(id).1);
    let mut peak = rss0;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        peak = peak.max(own_rss_mb());
    }
    let (kept, read1) = provider.dev_server_log_bytes(id);
    println!(
        "  a dev server flooding one endless line: {:.0} MB read in 10 s, {kept} bytes kept; this process {rss0:.0} MB -> peak {peak:.0} MB",
        (read1 - read0) as f64 / 1048576.0
    );
    provider.stop_all().await;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let which: Vec<String> = std::env::args().skip(1).collect();
    let all = which.is_empty();
    if all || which.iter().any(|w| w == "agent") {
        agent_figures().await.context("agent figures")?;
    }
    if all || which.iter().any(|w| w == "sandbox") {
        sandbox_figures().await.context("sandbox figures")?;
    }
    if all || which.iter().any(|w| w == "hardening") {
        hardening_figures().await.context("hardening figures")?;
    }
    if all || which.iter().any(|w| w == "cluster") {
        cluster::cluster_figures()
            .await
            .context("cluster figures")?;
    }
    Ok(())
}
