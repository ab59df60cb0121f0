//! Several `codeflux` processes on one PostgreSQL database (issue 14): event numbers come from
//! the database, so two processes never collide; a reader connected to one process sees, live
//! and without gaps, the events another process writes (LISTEN/NOTIFY); runs are claimed from
//! one queue, a killed node's run is resumed by another from its checkpoint, and a preview
//! asked of a node without the project's sandbox is forwarded to the node that has it.

use std::time::{Duration, Instant};

use codeflux_test_support::scripted_llm::{ScriptedLlm, Turn};
use codeflux_test_support::{Backend, ServerOptions, ServerProcess, TestDb};
use serde_json::json;

use crate::sandbox::{hmr_hello, hmr_token, preview_get, wait_preview};
use crate::support::{binary, call, get, is_end, root, sse};

fn node(db: &TestDb, llm: &ScriptedLlm, data: &std::path::Path, json_logs: bool) -> ServerProcess {
    node_with(db, llm, data, json_logs, "", &[])
}

/// A node whose model calls go to `<llm>/<name>` (so the scripted model's log tells which node
/// asked), with extra settings.
fn node_with(
    db: &TestDb,
    llm: &ScriptedLlm,
    data: &std::path::Path,
    json_logs: bool,
    name: &str,
    extra: &[(&str, &str)],
) -> ServerProcess {
    let base = if name.is_empty() {
        llm.base_url.clone()
    } else {
        format!("{}/{name}", llm.base_url)
    };
    let mut env: Vec<(String, String)> = vec![
        ("DATABASE_URL".into(), db.url.clone()),
        ("LLM_BASE_URL".into(), base),
        ("LLM_API_KEY".into(), "sk-cluster".into()),
        ("LLM_MODEL".into(), "scripted".into()),
    ];
    if json_logs {
        env.push(("CODEFLUX_LOG_FORMAT".into(), "json".into()));
    }
    for (k, v) in extra {
        env.push(((*k).into(), (*v).into()));
    }
    ServerProcess::start(ServerOptions {
        binary: binary(),
        workdir: root(),
        data_dir: data.to_path_buf(),
        env,
        addr: None,
    })
    .expect("node starts")
}

/// The value of one sample line of /metrics.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("{name} not in {text}"))
        .trim()
        .parse()
        .unwrap()
}

fn page(marker: &str) -> Turn {
    Turn::tool(
        "createOrUpdateFiles",
        json!({"files": [{"path": "src/App.tsx", "content": format!("export default function App() {{\n  return <h1>{marker}</h1>;\n}}\n")}]}),
    )
}

fn ids(events: &[(String, String, serde_json::Value)]) -> Vec<i64> {
    events
        .iter()
        .map(|(id, _, _)| id.parse().unwrap())
        .collect()
}

#[tokio::test]
async fn a_reader_on_one_node_sees_every_event_another_node_writes() {
    let db = TestDb::new(Backend::Postgres).await.unwrap();
    let llm = ScriptedLlm::start().await.unwrap();
    let (da, db_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = node(&db, &llm, da.path(), false);
    let b = node(&db, &llm, db_dir.path(), true);

    // A run on node A, watched from node B.
    llm.push([
        page("CLUSTER-ONE"),
        Turn::text("<task_summary>One.</task_summary>"),
    ]);
    let (st, p) = call(
        &a.base_url,
        "projects/create",
        &[("prompt", "Build a page")],
    )
    .await;
    assert_eq!(st, 200, "{p}");
    let pid = p["id"].as_str().unwrap().to_owned();
    let first = sse(&b.base_url, &pid, None, is_end).await;
    let n = first.len() as i64;
    assert_eq!(
        ids(&first),
        (1..=n).collect::<Vec<_>>(),
        "gap-free, in order"
    );
    assert_eq!(first.last().unwrap().1, "run_finished");

    // A follow-up through node B's API (whichever node claims it, its numbers continue the
    // project's), watched live from node A.
    llm.push([
        page("CLUSTER-TWO"),
        Turn::text("<task_summary>Two.</task_summary>"),
    ]);
    let watcher = {
        let (base, pid, last) = (a.base_url.clone(), pid.clone(), n.to_string());
        tokio::spawn(async move { sse(&base, &pid, Some(&last), is_end).await })
    };
    let (st, m) = call(
        &b.base_url,
        "messages/create",
        &[("project_id", &pid), ("content", "Change it")],
    )
    .await;
    assert_eq!(st, 200, "{m}");
    let second = watcher.await.unwrap();
    let m2 = n + second.len() as i64;
    assert_eq!(
        ids(&second),
        (n + 1..=m2).collect::<Vec<_>>(),
        "live from the other node, gap-free"
    );
    assert_eq!(second.last().unwrap().1, "run_finished");

    // Both nodes replay the same history, numbered 1..=m2.
    for base in [&a.base_url, &b.base_url] {
        let ends = std::cell::Cell::new(0);
        let all = sse(base, &pid, Some("0"), |k| {
            if is_end(k) {
                ends.set(ends.get() + 1);
            }
            ends.get() == 2
        })
        .await;
        assert_eq!(ids(&all), (1..=m2).collect::<Vec<_>>(), "{base}");
    }

    // Metrics: runs by status from the database (both nodes agree), the rest per node (which
    // node claimed which run is the queue's choice: the sums are fixed).
    let (mut written, mut runs, mut tokens) = (0.0, 0.0, 0.0);
    for srv in [&a, &b] {
        let (st, text) = get(&format!("{}/metrics", srv.base_url)).await;
        assert_eq!(st, 200, "{text}");
        assert_eq!(
            sample(&text, "codeflux_runs{status=\"finished\"}"),
            2.0,
            "{text}"
        );
        assert_eq!(sample(&text, "codeflux_runs{status=\"running\"}"), 0.0);
        assert_eq!(sample(&text, "codeflux_nodes_alive"), 2.0, "{text}");
        runs += sample(&text, "codeflux_run_duration_seconds_count");
        tokens += sample(&text, "codeflux_model_tokens_total{kind=\"prompt\"}")
            + sample(&text, "codeflux_model_tokens_total{kind=\"completion\"}");
        written += sample(&text, "codeflux_events_written_total");
    }
    assert_eq!(runs, 2.0, "two runs, each executed once");
    assert_eq!(tokens, 960.0);
    assert!(
        written >= m2 as f64 - 2.0 && written <= m2 as f64,
        "each event written once, by one node ({written} of {m2}; the queued events are written by the node asked)"
    );

    // One active run per project across nodes: a follow-up sent to node B while a node works
    // on the project waits until that run has ended.
    let gate = std::sync::Arc::new(tokio::sync::Notify::new());
    llm.push([
        page("CLUSTER-THREE"),
        Turn::Gated {
            turn: Box::new(Turn::text("<task_summary>Three.</task_summary>")),
            at: 1,
            gate: gate.clone(),
        },
    ]);
    let before = llm.agent_requests().len();
    let (st, _) = call(
        &a.base_url,
        "messages/create",
        &[("project_id", &pid), ("content", "Third")],
    )
    .await;
    assert_eq!(st, 200);
    let t0 = std::time::Instant::now();
    while llm.agent_requests().len() < before + 2 {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(60),
            "run 3 never reached its gate"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    llm.push([
        page("CLUSTER-FOUR"),
        Turn::text("<task_summary>Four.</task_summary>"),
    ]);
    let (st, _) = call(
        &b.base_url,
        "messages/create",
        &[("project_id", &pid), ("content", "Fourth")],
    )
    .await;
    assert_eq!(st, 200);
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(
        llm.agent_requests().len(),
        before + 2,
        "the follow-up waits for the working run"
    );
    gate.notify_waiters();
    let ends = std::cell::Cell::new(0);
    let rest = sse(&b.base_url, &pid, Some(&m2.to_string()), |k| {
        if is_end(k) {
            ends.set(ends.get() + 1);
        }
        ends.get() == 2
    })
    .await;
    let kinds: Vec<&str> = rest.iter().map(|(_, k, _)| k.as_str()).collect();
    let first_end = kinds.iter().position(|k| *k == "run_finished").unwrap();
    let second_start = kinds.iter().rposition(|k| *k == "run_started").unwrap();
    assert!(first_end < second_start, "one run at a time: {kinds:?}");
    assert_eq!(kinds.last(), Some(&"run_finished"));
    assert_eq!(
        ids(&rest),
        (m2 + 1..=m2 + rest.len() as i64).collect::<Vec<_>>()
    );

    // Node B logs JSON, one object per line.
    let out = b.output();
    let lines: Vec<&str> = out.lines().filter(|l| l.starts_with('{')).collect();
    assert!(lines.len() > 3, "{out}");
    for l in lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert!(v["level"].is_string() && v["timestamp"].is_string(), "{l}");
    }
}

/// Which node (its model path prefix) sent an agent request.
fn node_of(path: &str) -> &str {
    path.trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default()
}

#[tokio::test]
async fn a_killed_nodes_run_is_resumed_elsewhere_and_previews_are_forwarded() {
    let db = TestDb::new(Backend::Postgres).await.unwrap();
    let llm = ScriptedLlm::start().await.unwrap();
    let base_path = url::Url::parse(&llm.base_url).unwrap().path().to_owned();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let lease = [("CODEFLUX_LEASE_SECS", "2")];
    let mut a = Some(node_with(&db, &llm, dirs[0].path(), false, "na", &lease));
    let b = node_with(&db, &llm, dirs[1].path(), false, "nb", &lease);

    // A run that writes its page, then hangs in its second model call.
    let gate = std::sync::Arc::new(tokio::sync::Notify::new());
    llm.push([
        page("RESUMED-PAGE"),
        Turn::Gated {
            turn: Box::new(Turn::text("never arrives")),
            at: 1,
            gate: gate.clone(),
        },
    ]);
    let (st, p) = call(&b.base_url, "projects/create", &[("prompt", "Build it")]).await;
    assert_eq!(st, 200, "{p}");
    let pid = p["id"].as_str().unwrap().to_owned();
    assert!(llm.wait_requests(2, Duration::from_secs(60)).await);
    let first = llm.agent_requests();
    let worker = node_of(first[1].path.trim_start_matches(&base_path)).to_owned();
    assert!(worker == "na" || worker == "nb", "{worker}");
    // A reader on the node that survives, connected before the kill.
    let (dead, alive) = if worker == "na" {
        (a.take().unwrap(), &b)
    } else {
        (b, a.as_ref().unwrap())
    };
    let alive_url = alive.base_url.clone();
    let watcher = {
        let (base, pid) = (alive_url.clone(), pid.clone());
        tokio::spawn(async move { sse(&base, &pid, None, is_end).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;

    // SIGKILL mid-run: the survivor takes the run over once the lease runs out and resumes it
    // from the checkpoint (the page written in step 1 is in the rebuilt workspace).
    llm.push([Turn::text("<task_summary>Resumed.</task_summary>")]);
    let killed_at = Instant::now();
    dead.kill();
    gate.notify_waiters();
    let events = tokio::time::timeout(Duration::from_secs(120), watcher)
        .await
        .expect("the resumed run ends")
        .unwrap();
    let took = killed_at.elapsed();
    let n = events.len() as i64;
    assert_eq!(
        ids(&events),
        (1..=n).collect::<Vec<_>>(),
        "gap-free, no duplicates"
    );
    assert_eq!(events.last().unwrap().1, "run_finished", "{events:?}");
    assert!(
        events
            .iter()
            .any(|(_, k, d)| k == "notice" && d.to_string().contains("stopped answering")),
        "{events:?}"
    );
    assert!(took < Duration::from_secs(60), "taken over in {took:?}");
    let calls = llm.agent_requests();
    let resumed = calls.last().unwrap();
    assert_ne!(node_of(resumed.path.trim_start_matches(&base_path)), worker);
    // It continued after step 1 (whose tool result it sent), not from the start.
    assert_eq!(calls.len(), 3, "the page step was not repeated");
    let sent = resumed.body["messages"].to_string();
    assert!(sent.contains("\"role\":\"tool\""), "{sent}");
    let (_, msgs) = call(&alive_url, "messages/get_many", &[("project_id", &pid)]).await;
    let last = msgs.as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["role"].as_str(), last["type"].as_str()),
        (Some("ASSISTANT"), Some("RESULT")),
        "{last}"
    );
    assert!(
        last["fragment"]["files"]["src/App.tsx"]
            .as_str()
            .unwrap_or_default()
            .contains("RESUMED-PAGE"),
        "the version holds the file written before the kill: {last}"
    );

    // A third node without the sandbox forwards the preview (HTTP and the HMR websocket) to
    // the node that holds it, and starts no sandbox itself.
    let c = node_with(&db, &llm, dirs[2].path(), false, "nc", &lease);
    let module = wait_preview(&c.base_url, &pid, "/src/App.tsx", "RESUMED-PAGE").await;
    assert!(module.contains("jsx"), "{module}");
    let (st, html) = preview_get(&c.base_url, &pid, "/", "text/html").await;
    assert_eq!(st, 200);
    assert_eq!(
        html.matches("data-codeflux=\"preview-errors\"").count(),
        1,
        "our script is added once, by the node that serves the page: {html}"
    );
    let token = hmr_token(&c.base_url, &pid).await;
    let hello = hmr_hello(&c.base_url, &pid, &token).await;
    assert!(
        hello.starts_with("HTTP/1.1 101") && hello.contains("connected"),
        "{hello}"
    );
    let (_, text) = get(&format!("{}/metrics", c.base_url)).await;
    assert_eq!(sample(&text, "codeflux_live_sandboxes"), 0.0, "{text}");
    let (_, text) = get(&format!("{alive_url}/metrics")).await;
    assert_eq!(
        sample(&text, "codeflux_lease_takeovers_total"),
        1.0,
        "{text}"
    );
    assert_eq!(sample(&text, "codeflux_live_sandboxes"), 1.0, "{text}");

    // A stop asked on a node that does not run the run reaches the node that does.
    let gate = std::sync::Arc::new(tokio::sync::Notify::new());
    llm.push([Turn::Gated {
        turn: Box::new(Turn::text("slow")),
        at: 1,
        gate: gate.clone(),
    }]);
    let before = llm.agent_requests().len();
    let (st, _) = call(
        &alive_url,
        "messages/create",
        &[("project_id", &pid), ("content", "More")],
    )
    .await;
    assert_eq!(st, 200);
    let t0 = Instant::now();
    while llm.agent_requests().len() <= before {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the follow-up never started"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let runner = node_of(
        llm.agent_requests()[before]
            .path
            .trim_start_matches(&base_path),
    )
    .to_owned();
    let other = if runner == "nc" {
        alive_url.clone()
    } else {
        c.base_url.clone()
    };
    let (st, body) = call(&other, "runs/cancel", &[("project_id", &pid)]).await;
    assert_eq!((st, body["cancelled"].as_u64()), (200, Some(1)), "{body}");
    let ends = sse(&other, &pid, Some(&n.to_string()), is_end).await;
    assert_eq!(ends.last().unwrap().1, "run_cancelled", "{ends:?}");
    gate.notify_waiters();
    let (_, msgs) = call(&other, "messages/get_many", &[("project_id", &pid)]).await;
    let last = msgs.as_array().unwrap().last().unwrap().clone();
    assert!(
        last["content"]
            .as_str()
            .unwrap_or_default()
            .starts_with("Stopped."),
        "{last}"
    );
}
