//! `cargo xtask bench`: prints performance figures (no assertions).
//!
//! - sandbox create -> preview ready, for each template (cold: a new project's clone)
//! - edit -> preview updated (a file written from the host until the dev server serves it)
//! - resident memory per live sandbox (processes in its cgroup) and how many fit in 24 GiB
//! - the context sent to the model over a scripted 10-step agent run (characters, ~tokens)

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
            "  {:<10} create -> preview ready {:>6.2} s (clone + netns + dev server; of which open {:.2} s)",
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
    Ok(())
}
