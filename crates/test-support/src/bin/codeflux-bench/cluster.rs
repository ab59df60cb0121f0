//! Cluster figures: run throughput with 1, 2 and 3 nodes on one PostgreSQL database (the real
//! `codeflux` binary; a scripted model with a fixed think time per call, so the figure is the
//! queue's and the sandboxes', not a model's), and the takeover time after a SIGKILL.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use codeflux_test_support::scripted_llm::{ScriptedLlm, Turn};
use codeflux_test_support::{Backend, ServerOptions, ServerProcess, TestDb};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Seconds the model "thinks" before each answer.
const THINK: Duration = Duration::from_secs(1);
/// Terminal steps per run (then the summary): 4 model calls with tools per run.
const STEPS: usize = 3;
/// Runs per measurement.
const RUNS: usize = 12;
/// Slots per node (CODEFLUX_MAX_RUNS).
const SLOTS: &str = "2";

fn script() -> Vec<Turn> {
    let mut turns: Vec<Turn> = (1..=STEPS)
        .map(|i| {
            Turn::Delayed(
                THINK,
                Box::new(Turn::tool(
                    "terminal",
                    json!({"command": format!("echo bench-step-{i}")}),
                )),
            )
        })
        .collect();
    turns.push(Turn::Delayed(
        THINK,
        Box::new(Turn::text("<task_summary>Done.</task_summary>")),
    ));
    turns
}

fn binary() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let bin = exe.with_file_name("codeflux");
    if !bin.exists() {
        bail!(
            "{} is not built (cargo xtask bench builds it)",
            bin.display()
        );
    }
    Ok(bin)
}

fn root() -> PathBuf {
    codeflux_test_support::workspace_root(env!("CARGO_MANIFEST_DIR"))
}

/// A node on `db` whose model calls go to `<llm>/<name>`.
fn node(
    db: &TestDb,
    llm: &ScriptedLlm,
    name: &str,
    extra: &[(&str, &str)],
) -> Result<(ServerProcess, tempfile::TempDir)> {
    let data = tempfile::tempdir()?;
    let mut env: Vec<(String, String)> = vec![
        ("DATABASE_URL".into(), db.url.clone()),
        ("LLM_BASE_URL".into(), format!("{}/{name}", llm.base_url)),
        ("LLM_API_KEY".into(), "sk-bench".into()),
        ("LLM_MODEL".into(), "scripted".into()),
        ("CODEFLUX_MAX_RUNS".into(), SLOTS.into()),
        ("RUST_LOG".into(), "warn".into()),
    ];
    env.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let srv = ServerProcess::start(ServerOptions {
        binary: binary()?,
        workdir: root(),
        data_dir: data.path().to_path_buf(),
        env,
        addr: None,
    })?;
    Ok((srv, data))
}

/// One HTTP/1.1 request on a fresh connection; the status and body.
async fn http(
    base: &str,
    method: &str,
    path: &str,
    form: &[(&str, &str)],
) -> Result<(u16, String)> {
    let addr = base.trim_start_matches("http://");
    let mut conn = tokio::net::TcpStream::connect(addr).await?;
    let body: String = form
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                v.replace('%', "%25").replace('&', "%26").replace(' ', "+")
            )
        })
        .collect::<Vec<_>>()
        .join("&");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(req.as_bytes()).await?;
    let mut out = Vec::new();
    conn.read_to_end(&mut out).await?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no HTTP status")?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

async fn create(base: &str, prompt: &str) -> Result<String> {
    let (st, body) = http(base, "POST", "/api/projects/create", &[("prompt", prompt)]).await?;
    let v: Value = serde_json::from_str(&body).with_context(|| format!("{st} {body}"))?;
    v["id"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("{st} {body}"))
}

/// Whether the project's last message is the assistant's (its run ended).
async fn answered(base: &str, pid: &str) -> Result<Option<String>> {
    let (_, body) = http(
        base,
        "POST",
        "/api/messages/get_many",
        &[("project_id", pid)],
    )
    .await?;
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    Ok(v.as_array()
        .and_then(|m| m.last())
        .filter(|m| m["role"] == "ASSISTANT")
        .map(|m| m["type"].as_str().unwrap_or_default().to_owned()))
}

async fn wait_answers(base: &str, pids: &[String], limit: Duration) -> Result<usize> {
    let t0 = Instant::now();
    loop {
        let mut results = 0;
        let mut all = true;
        for pid in pids {
            match answered(base, pid).await? {
                Some(t) if t == "RESULT" => results += 1,
                Some(_) => {}
                None => all = false,
            }
        }
        if all {
            return Ok(results);
        }
        if t0.elapsed() > limit {
            bail!("runs still working after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn throughput(nodes: usize) -> Result<(f64, usize)> {
    let db = TestDb::new(Backend::Postgres).await?;
    let llm = ScriptedLlm::start().await?;
    llm.set_script(script());
    let mut running = Vec::new();
    for k in 1..=nodes {
        running.push(node(&db, &llm, &format!("n{k}"), &[])?);
    }
    let t0 = Instant::now();
    let mut pids = Vec::new();
    for i in 0..RUNS {
        let via = &running[i % nodes].0.base_url;
        pids.push(create(via, &format!("bench run {i}")).await?);
    }
    let ok = wait_answers(&running[0].0.base_url, &pids, Duration::from_secs(900)).await?;
    let secs = t0.elapsed().as_secs_f64();
    for (srv, _) in running {
        srv.stop()?;
    }
    Ok((secs, ok))
}

/// Which node (model path prefix) made each agent request so far.
fn callers(llm: &ScriptedLlm) -> Vec<String> {
    let base = llm.base_url.trim_start_matches("http://");
    let prefix = base
        .split_once('/')
        .map(|(_, p)| format!("/{p}/"))
        .unwrap_or_default();
    llm.agent_requests()
        .iter()
        .map(|r| {
            r.path
                .trim_start_matches(&prefix)
                .split('/')
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

/// Kill -> the survivor's first model call for the run, and kill -> its RESULT, with the
/// default lease (10 s).
async fn takeover() -> Result<(f64, f64)> {
    let db = TestDb::new(Backend::Postgres).await?;
    let llm = ScriptedLlm::start().await?;
    let mut long = script();
    long.splice(
        0..0,
        (0..4).map(|_| {
            Turn::Delayed(
                THINK,
                Box::new(Turn::tool("terminal", json!({"command": "echo more"}))),
            )
        }),
    );
    llm.set_script(long);
    let (a, _da) = node(&db, &llm, "na", &[])?;
    let (b, _db) = node(&db, &llm, "nb", &[])?;
    let pid = create(&a.base_url, "bench takeover").await?;
    let t0 = Instant::now();
    while llm.agent_requests().len() < 3 {
        if t0.elapsed() > Duration::from_secs(120) {
            bail!("the run did not start");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let worker = callers(&llm).last().cloned().unwrap_or_default();
    let before = llm.agent_requests().len();
    let (dead, alive) = if worker == "na" { (a, b) } else { (b, a) };
    let killed = Instant::now();
    dead.kill();
    let first = loop {
        let calls = callers(&llm);
        if calls.len() > before && calls[before..].iter().any(|c| *c != worker) {
            break killed.elapsed().as_secs_f64();
        }
        if killed.elapsed() > Duration::from_secs(120) {
            bail!("nobody took the run over");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    wait_answers(
        &alive.base_url,
        std::slice::from_ref(&pid),
        Duration::from_secs(300),
    )
    .await?;
    let done = killed.elapsed().as_secs_f64();
    alive.stop()?;
    Ok((first, done))
}

pub async fn cluster_figures() -> Result<()> {
    println!(
        "cluster (nodes on one PostgreSQL; scripted model thinking {} s per call, {} model calls per run, CODEFLUX_MAX_RUNS={SLOTS} per node, every node on this 2-core machine)",
        THINK.as_secs_f64(),
        STEPS + 1
    );
    let mut one = None;
    for n in 1..=3 {
        let (secs, ok) = throughput(n)
            .await
            .with_context(|| format!("{n} node(s)"))?;
        let per_min = RUNS as f64 / secs * 60.0;
        let base = *one.get_or_insert(per_min);
        println!(
            "  {n} node(s): {RUNS} runs ({ok} RESULT) in {secs:.1} s = {per_min:.1} runs/min ({:.2}x one node)",
            per_min / base
        );
    }
    let (first, done) = takeover().await.context("takeover")?;
    println!(
        "  takeover after SIGKILL (lease 10 s): first model call on the survivor after {first:.1} s, the run's RESULT after {done:.1} s"
    );
    Ok(())
}
