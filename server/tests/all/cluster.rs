//! Several `codeflux` processes on one PostgreSQL database (issue 14, first steps): event
//! numbers come from the database, so two processes never collide; a reader connected to one
//! process sees, live and without gaps, the events another process writes (LISTEN/NOTIFY).

use codeflux_test_support::scripted_llm::{ScriptedLlm, Turn};
use codeflux_test_support::{Backend, ServerOptions, ServerProcess, TestDb};
use serde_json::json;

use crate::support::{binary, call, get, is_end, root, sse};

fn node(db: &TestDb, llm: &ScriptedLlm, data: &std::path::Path, json_logs: bool) -> ServerProcess {
    let mut env: Vec<(String, String)> = vec![
        ("DATABASE_URL".into(), db.url.clone()),
        ("LLM_BASE_URL".into(), llm.base_url.clone()),
        ("LLM_API_KEY".into(), "sk-cluster".into()),
        ("LLM_MODEL".into(), "scripted".into()),
    ];
    if json_logs {
        env.push(("CODEFLUX_LOG_FORMAT".into(), "json".into()));
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

    // A follow-up through node B's API: node B runs it (its numbers continue the project's),
    // watched live from node A.
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

    // Metrics: runs by status from the database (both nodes agree), the rest per node.
    let mut written = 0.0;
    for (srv, tokens) in [(&a, 480.0), (&b, 480.0)] {
        let (st, text) = get(&format!("{}/metrics", srv.base_url)).await;
        assert_eq!(st, 200, "{text}");
        assert_eq!(
            sample(&text, "codeflux_runs{status=\"finished\"}"),
            2.0,
            "{text}"
        );
        assert_eq!(sample(&text, "codeflux_runs{status=\"running\"}"), 0.0);
        assert_eq!(
            sample(&text, "codeflux_run_duration_seconds_count"),
            1.0,
            "one run each"
        );
        assert_eq!(
            sample(&text, "codeflux_model_tokens_total{kind=\"prompt\"}")
                + sample(&text, "codeflux_model_tokens_total{kind=\"completion\"}"),
            tokens
        );
        written += sample(&text, "codeflux_events_written_total");
    }
    assert_eq!(written, m2 as f64, "each event written once, by one node");

    // One active run per project across nodes: a follow-up sent to node B while node A works
    // on the project waits until A's run has ended.
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
        "node B waits for node A's run"
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
