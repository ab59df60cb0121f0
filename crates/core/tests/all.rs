//! Runs end to end in-process: Services + RunManager + event bus on a real database, a real
//! sandbox and the scripted model server over HTTP.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use codeflux_core::Actor;
use codeflux_core::sandbox::local::{LocalConfig, LocalProvider};
use codeflux_core::{CoreConfig, LlmClientOptions, LlmSettings, Services};
use codeflux_protocol::{MessageKind, Role, RunEvent, RunStatus, StoredEvent};
use codeflux_test_support::scripted_llm::{ScriptedLlm, Turn};
use codeflux_test_support::{Backend, TestDb};
use serde_json::json;
use tokio::sync::Notify;

struct Rig {
    services: Services,
    llm: ScriptedLlm,
    _db: TestDb,
    _data: tempfile::TempDir,
}

async fn rig_with(backend: Backend, configure: impl FnOnce(&mut CoreConfig)) -> Rig {
    let r = rig_unstarted(backend, configure).await;
    r.services.runs().start().await.unwrap();
    r
}

/// A rig whose node does not claim runs yet (`runs().start()` not called).
async fn rig_unstarted(backend: Backend, configure: impl FnOnce(&mut CoreConfig)) -> Rig {
    let llm = ScriptedLlm::start().await.unwrap();
    let tdb = TestDb::new(backend).await.unwrap();
    let db = tdb.migrated().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let templates = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sandbox-templates");
    let sandboxes = LocalProvider::new(LocalConfig {
        dev_servers: false,
        ..LocalConfig::new(data.path().to_path_buf(), templates, 4321).with_host_npm()
    })
    .unwrap();
    let mut cfg = CoreConfig {
        llm: LlmSettings {
            base_url: Some(llm.base_url.clone()),
            api_key: Some("sk-core-test".into()),
            model: Some("scripted".into()),
            ..LlmSettings::default()
        },
        llm_options: LlmClientOptions {
            backoff_min: Duration::from_millis(10),
            backoff_max: Duration::from_millis(20),
            ..LlmClientOptions::default()
        },
        max_concurrent_runs: 4,
        ..CoreConfig::default()
    };
    configure(&mut cfg);
    let services = Services::new(db, Arc::new(sandboxes), cfg);
    Rig {
        services,
        llm,
        _db: tdb,
        _data: data,
    }
}

async fn rig(backend: Backend) -> Rig {
    rig_with(backend, |_| {}).await
}

/// Reads the project's feed from `after` until `n` runs have ended (at most 60 s).
async fn until_runs_end(s: &Services, project: &str, after: i64, n: usize) -> Vec<StoredEvent> {
    let mut feed = s.events(&Actor::Local, project, after).await.unwrap();
    let mut got = Vec::new();
    let mut ended = 0;
    while ended < n {
        let e = tokio::time::timeout(Duration::from_secs(60), feed.next())
            .await
            .unwrap_or_else(|_| panic!("timed out; events so far: {got:#?}"))
            .unwrap();
        if e.event.is_terminal() {
            ended += 1;
        }
        got.push(e);
    }
    got
}

const APP: &str = "import { useState } from \"react\";\nexport default function App() {\n  const [n, setN] = useState(0);\n  return <button onClick={() => setN(n + 1)}>MARKER-ONE {n}</button>;\n}\n";

async fn golden_path_and_follow_up(backend: Backend) {
    let r = rig(backend).await;
    r.llm.push([
        Turn::tool(
            "createOrUpdateFiles",
            json!({"files": [{"path": "src/App.tsx", "content": APP}]}),
        ),
        Turn::text("<task_summary>Built a counter.</task_summary>"),
    ]);
    let project = r
        .services
        .create_project(&Actor::Local, "Build a counter", None, None)
        .await
        .unwrap();
    let pid = project.id.to_string();
    let events = until_runs_end(&r.services, &pid, 0, 1).await;
    let kinds: Vec<&str> = events.iter().map(|e| e.event.kind()).collect();
    assert_eq!(kinds.first(), Some(&"run_queued"));
    assert!(
        kinds.contains(&"run_started")
            && kinds.contains(&"tool_call")
            && kinds.contains(&"file_written")
    );
    assert_eq!(kinds.last(), Some(&"run_finished"), "{kinds:?}");
    let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=events.len() as i64).collect::<Vec<_>>(),
        "numbered 1, 2, 3, ..."
    );

    let msgs = r.services.list_messages(&Actor::Local, &pid).await.unwrap();
    assert_eq!(msgs.len(), 2);
    assert_eq!(
        (msgs[1].role, msgs[1].kind),
        (Role::Assistant, MessageKind::Result)
    );
    assert_eq!(msgs[1].content, "Your app is ready to try.");
    // What the run cost, as the provider counted it (each scripted answer: 100 + 20 tokens;
    // two agent turns, the title and the reply), the model, the run and the check.
    let usage = msgs[1].usage.unwrap();
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (400, 80));
    assert_eq!(usage.cost_usd, None, "no cost reported and no price table");
    assert_eq!(msgs[1].model.as_deref(), Some("scripted"));
    assert!(msgs[1].run_id.is_some());
    let checks = msgs[1].checks.as_ref().expect("checked");
    assert!(checks.passed(), "{checks:?}");
    assert!(
        checks
            .items
            .iter()
            .any(|i| i.name == "type check" && i.status == codeflux_protocol::CheckStatus::Passed),
        "{checks:?}"
    );
    let frag = msgs[1].fragment.as_ref().unwrap();
    assert_eq!(frag.title, "Counter App");
    assert_eq!(frag.files["src/App.tsx"], APP);
    assert!(
        frag.files.contains_key("package.json") && frag.files.contains_key("src/main.tsx"),
        "full snapshot"
    );
    assert!(!frag.files.keys().any(|k| k.contains("node_modules")));
    assert_eq!(
        frag.sandbox_url,
        format!("http://{pid}.preview.localhost:4321/")
    );
    if let RunEvent::RunFinished {
        fragment_id,
        file_count,
        ..
    } = &events.last().unwrap().event
    {
        assert_eq!(*fragment_id, frag.id);
        assert_eq!(*file_count as usize, frag.files.len());
    }
    assert!(
        r.services
            .active_runs(&Actor::Local, &pid)
            .await
            .unwrap()
            .is_empty()
    );

    // A follow-up continues from the previous files (an edit, not a rewrite).
    r.llm.push([
        Turn::tool(
            "editFile",
            json!({"path": "src/App.tsx", "search": "MARKER-ONE", "replace": "MARKER-TWO"}),
        ),
        Turn::text("<task_summary>Renamed.</task_summary>"),
    ]);
    let last = events.last().unwrap().seq;
    r.services
        .create_message(&Actor::Local, &pid, "Rename the label", None)
        .await
        .unwrap();
    until_runs_end(&r.services, &pid, last, 1).await;
    let msgs = r.services.list_messages(&Actor::Local, &pid).await.unwrap();
    assert_eq!(msgs.len(), 4);
    let frag2 = msgs[3].fragment.as_ref().unwrap();
    assert!(
        frag2.files["src/App.tsx"].contains("MARKER-TWO")
            && frag2.files["src/App.tsx"].contains("useState")
    );
    assert_eq!(frag2.files.len(), frag.files.len());
    // The model saw the earlier conversation and was told it is a follow-up.
    let req = r.llm.agent_requests().last().unwrap().messages();
    assert!(req.iter().any(|m| {
        m["content"]
            .as_str()
            .is_some_and(|c| c.contains("Build a counter"))
    }));
    assert!(req.iter().any(|m| {
        m["content"]
            .as_str()
            .is_some_and(|c| c.contains("change to the app"))
    }));
}

#[tokio::test]
async fn sqlite_golden_path_and_follow_up() {
    golden_path_and_follow_up(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_golden_path_and_follow_up() {
    golden_path_and_follow_up(Backend::Postgres).await;
}

#[tokio::test]
async fn a_follow_up_during_a_run_waits_its_turn() {
    let r = rig(Backend::Sqlite).await;
    let gate = Arc::new(Notify::new());
    r.llm.push([
        Turn::Gated {
            turn: Box::new(Turn::text("Working...<task_summary>First.</task_summary>")),
            at: 2,
            gate: gate.clone(),
        },
        Turn::text("<task_summary>Second.</task_summary>"),
    ]);
    let project = r
        .services
        .create_project(&Actor::Local, "first", None, None)
        .await
        .unwrap();
    let pid = project.id.to_string();
    assert!(r.llm.wait_requests(1, Duration::from_secs(10)).await);
    r.services
        .create_message(&Actor::Local, &pid, "second", None)
        .await
        .unwrap();
    let active = r.services.active_runs(&Actor::Local, &pid).await.unwrap();
    assert_eq!(
        active.iter().map(|x| x.status).collect::<Vec<_>>(),
        vec![RunStatus::Running, RunStatus::Queued]
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        r.llm.agent_requests().len(),
        1,
        "the follow-up has not started"
    );
    gate.notify_waiters();
    let events = until_runs_end(&r.services, &pid, 0, 2).await;
    let order: Vec<&str> = events
        .iter()
        .map(|e| e.event.kind())
        .filter(|k| *k == "run_started" || *k == "run_finished")
        .collect();
    assert_eq!(
        order,
        vec!["run_started", "run_finished", "run_started", "run_finished"]
    );
    let queued: Vec<u32> = events
        .iter()
        .filter_map(|e| match e.event {
            RunEvent::RunQueued { position, .. } => Some(position),
            _ => None,
        })
        .collect();
    assert_eq!(queued, vec![0, 1]);
}

#[tokio::test]
async fn cancel_stops_the_run_mid_stream_and_drops_queued_ones() {
    let r = rig(Backend::Sqlite).await;
    let gate = Arc::new(Notify::new());
    r.llm.push([Turn::Gated {
        turn: Box::new(Turn::text("This will never finish streaming because")),
        at: 2,
        gate: gate.clone(),
    }]);
    let project = r
        .services
        .create_project(&Actor::Local, "slow one", None, None)
        .await
        .unwrap();
    let pid = project.id.to_string();
    assert!(r.llm.wait_requests(1, Duration::from_secs(10)).await);
    r.services
        .create_message(&Actor::Local, &pid, "queued follow-up", None)
        .await
        .unwrap();
    let n = r.services.cancel_runs(&Actor::Local, &pid).await.unwrap();
    assert_eq!(n, 2);
    let events = until_runs_end(&r.services, &pid, 0, 2).await;
    assert_eq!(
        events
            .iter()
            .filter(|e| e.event.kind() == "run_cancelled")
            .count(),
        2
    );
    assert!(
        r.services
            .active_runs(&Actor::Local, &pid)
            .await
            .unwrap()
            .is_empty()
    );
    let msgs = r.services.list_messages(&Actor::Local, &pid).await.unwrap();
    let errors: Vec<&str> = msgs
        .iter()
        .filter(|m| m.kind == MessageKind::Error)
        .map(|m| m.content.as_str())
        .collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors.iter().any(|e| e.starts_with("Stopped")));
    gate.notify_waiters();
    // Nothing left to stop.
    assert_eq!(
        r.services.cancel_runs(&Actor::Local, &pid).await.unwrap(),
        0
    );
}

#[tokio::test]
async fn without_a_provider_the_run_fails_at_once_saying_what_to_set() {
    let r = rig_with(Backend::Sqlite, |c| c.llm = LlmSettings::default()).await;
    assert!(
        r.services
            .llm_problem()
            .unwrap()
            .contains("OPENROUTER_API_KEY")
    );
    let project = r
        .services
        .create_project(&Actor::Local, "anything", None, None)
        .await
        .unwrap();
    let pid = project.id.to_string();
    let events = until_runs_end(&r.services, &pid, 0, 1).await;
    match &events.last().unwrap().event {
        RunEvent::RunFailed { reason, class, .. } => {
            assert!(
                reason.contains("OPENROUTER_API_KEY") && reason.contains("LLM_BASE_URL"),
                "{reason}"
            );
            assert_eq!(class, "setup");
        }
        other => panic!("{other:?}"),
    }
    let msgs = r.services.list_messages(&Actor::Local, &pid).await.unwrap();
    assert_eq!(msgs[1].kind, MessageKind::Error);
    assert!(msgs[1].content.contains("LLM_API_KEY"));
}

#[tokio::test]
async fn a_model_error_leaves_an_error_message() {
    let r = rig(Backend::Sqlite).await;
    r.llm.push([Turn::status(
        401,
        r#"{"error":{"message":"invalid key sk-..."}}"#,
    )]);
    let project = r
        .services
        .create_project(&Actor::Local, "x", None, None)
        .await
        .unwrap();
    let pid = project.id.to_string();
    let events = until_runs_end(&r.services, &pid, 0, 1).await;
    assert!(
        matches!(&events.last().unwrap().event, RunEvent::RunFailed { class, .. } if class == "auth")
    );
    let msgs = r.services.list_messages(&Actor::Local, &pid).await.unwrap();
    assert!(
        msgs[1].content.contains("refused the API key"),
        "{}",
        msgs[1].content
    );
}

#[tokio::test]
async fn runs_left_by_a_dead_node_are_resumed_and_queued_ones_start() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        left_runs_are_resumed(backend).await;
    }
}

/// As left by a node that died: one project's run "running" under a lease that ran out (no
/// checkpoint: it starts again), another's still queued. A node's queue resumes the first and
/// starts the second; the dead execution's late writes are refused (fenced).
async fn left_runs_are_resumed(backend: Backend) {
    let r = rig_unstarted(backend, |c| c.node.lease = Duration::from_secs(2)).await;
    let db = r.services.db().clone();
    let new = |name: &str, prompt: &str| codeflux_core::db::NewProject {
        name: name.into(),
        template: Default::default(),
        prompt: prompt.into(),
        owner_id: None,
    };
    r.llm.push([
        Turn::text("<task_summary>Recovered.</task_summary>"),
        Turn::text("<task_summary>Recovered.</task_summary>"),
    ]);
    // A dead node claimed p1's run: its lease ends in the past.
    let dead = uuid::Uuid::now_v7();
    codeflux_core::db::cluster::register_node(&db, dead, None)
        .await
        .unwrap();
    let (p1, m1) = codeflux_core::db::create_project(&db, new("a", "one"))
        .await
        .unwrap();
    let run1 = codeflux_core::db::insert_run(&db, p1.id, m1.id, None)
        .await
        .unwrap();
    let old = codeflux_core::db::cluster::claim_run(&db, dead, 0)
        .await
        .unwrap()
        .expect("the dead node's claim");
    assert_eq!((old.run.id, old.taken_from), (run1.id, None));
    let (p2, m2) = codeflux_core::db::create_project(&db, new("b", "two"))
        .await
        .unwrap();
    codeflux_core::db::insert_run(&db, p2.id, m2.id, None)
        .await
        .unwrap();
    r.services.runs().start().await.unwrap();

    let e1 = until_runs_end(&r.services, &p1.id.to_string(), 0, 1).await;
    assert_eq!(e1.last().unwrap().event.kind(), "run_finished", "{e1:#?}");
    assert!(
        e1.iter().any(|e| matches!(&e.event, RunEvent::Notice { message } if message.contains("stopped answering"))),
        "the resumption is told: {e1:#?}"
    );
    let msgs = r
        .services
        .list_messages(&Actor::Local, &p1.id.to_string())
        .await
        .unwrap();
    assert_eq!(msgs.len(), 2);
    assert!(msgs[1].kind == MessageKind::Result, "{:?}", msgs[1]);
    let e2 = until_runs_end(&r.services, &p2.id.to_string(), 0, 1).await;
    assert_eq!(e2.last().unwrap().event.kind(), "run_finished");

    // The dead execution wakes up: none of its writes land.
    let late = codeflux_core::db::append_event(
        &db,
        p1.id,
        run1.id,
        codeflux_core::db::now(),
        &RunEvent::Notice {
            message: "late".into(),
        },
        Some(old.fence),
    )
    .await;
    assert!(
        matches!(late, Err(codeflux_core::db::DbError::Fenced)),
        "{late:?}"
    );
    let end =
        codeflux_core::db::cluster::end_run(&db, old.fence, RunStatus::Failed, None, None, None)
            .await;
    assert!(
        matches!(end, Err(codeflux_core::db::DbError::Fenced)),
        "{end:?}"
    );
    let run = codeflux_core::db::find_run(&db, run1.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(run.status, RunStatus::Finished);
}

#[tokio::test]
async fn the_global_limit_makes_runs_wait_for_a_slot() {
    let r = rig_with(Backend::Sqlite, |c| c.max_concurrent_runs = 1).await;
    let gate = Arc::new(Notify::new());
    r.llm.push([
        Turn::Gated {
            turn: Box::new(Turn::text("<task_summary>A.</task_summary>")),
            at: 1,
            gate: gate.clone(),
        },
        Turn::text("<task_summary>B.</task_summary>"),
    ]);
    let a = r
        .services
        .create_project(&Actor::Local, "a", None, None)
        .await
        .unwrap();
    assert!(r.llm.wait_requests(1, Duration::from_secs(10)).await);
    let b = r
        .services
        .create_project(&Actor::Local, "b", None, None)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(r.llm.agent_requests().len(), 1, "b waits for a's slot");
    let mut feed = r
        .services
        .events(&Actor::Local, &b.id.to_string(), 0)
        .await
        .unwrap();
    let mut saw_notice = false;
    for _ in 0..2 {
        if let Ok(Some(e)) = tokio::time::timeout(Duration::from_secs(5), feed.next()).await
            && matches!(e.event, RunEvent::Notice { .. })
        {
            saw_notice = true;
        }
    }
    assert!(saw_notice, "b is told it waits for a slot");
    gate.notify_waiters();
    until_runs_end(&r.services, &a.id.to_string(), 0, 1).await;
    until_runs_end(&r.services, &b.id.to_string(), 0, 1).await;
}

#[tokio::test]
async fn replay_from_a_number_gives_only_later_events() {
    let r = rig(Backend::Sqlite).await;
    r.llm.push([
        Turn::tool("terminal", json!({"command": "echo hi"})),
        Turn::text("<task_summary>ok</task_summary>"),
    ]);
    let project = r
        .services
        .create_project(&Actor::Local, "x", None, None)
        .await
        .unwrap();
    let pid = project.id.to_string();
    let all = until_runs_end(&r.services, &pid, 0, 1).await;
    let again = until_runs_end(&r.services, &pid, 3, 1).await;
    assert_eq!(again.first().unwrap().seq, 4);
    assert_eq!(again.len(), all.len() - 3);
    assert_eq!(again, all[3..].to_vec());
}

/// A model picked per message is used and recorded; an unknown one is refused before anything
/// is stored; a price table turns counted tokens into a cost.
#[tokio::test]
async fn the_model_is_chosen_per_message_recorded_and_priced() {
    let r = rig_with(Backend::Sqlite, |c| {
        c.model_prices = [("scripted-alt".to_owned(), (2.0, 10.0))].into();
    })
    .await;
    let err = r
        .services
        .create_project(
            &Actor::Local,
            "Build a counter",
            None,
            Some("no-such-model"),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, codeflux_protocol::ErrorKind::BadInput, "{err:?}");
    assert!(err.message.contains("no-such-model"), "{}", err.message);
    assert!(
        r.services
            .list_projects(&Actor::Local)
            .await
            .unwrap()
            .is_empty(),
        "nothing stored"
    );

    r.llm.push([
        Turn::tool(
            "createOrUpdateFiles",
            json!({"files": [{"path": "src/App.tsx", "content": APP}]}),
        ),
        Turn::text("<task_summary>Built a counter.</task_summary>"),
    ]);
    let project = r
        .services
        .create_project(&Actor::Local, "Build a counter", None, Some("scripted-alt"))
        .await
        .unwrap();
    let pid = project.id.to_string();
    until_runs_end(&r.services, &pid, 0, 1).await;
    let models: Vec<String> = r
        .llm
        .requests()
        .iter()
        .map(|q| q.body["model"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        models.len() == 4 && models.iter().all(|m| m == "scripted-alt"),
        "{models:?}"
    );
    let msgs = r.services.list_messages(&Actor::Local, &pid).await.unwrap();
    assert_eq!(msgs[1].model.as_deref(), Some("scripted-alt"));
    let usage = msgs[1].usage.unwrap();
    // 400 prompt tokens at $2/M and 80 completion tokens at $10/M.
    let cost = usage.cost_usd.unwrap();
    assert!((cost - 0.0016).abs() < 1e-9, "{cost}");

    // A follow-up without a model uses the default; an unknown one stores nothing.
    let before = r
        .services
        .list_messages(&Actor::Local, &pid)
        .await
        .unwrap()
        .len();
    let err = r
        .services
        .create_message(&Actor::Local, &pid, "Rename it", Some("gpt-nonexistent"))
        .await
        .unwrap_err();
    assert_eq!(err.kind, codeflux_protocol::ErrorKind::BadInput, "{err:?}");
    assert_eq!(
        r.services
            .list_messages(&Actor::Local, &pid)
            .await
            .unwrap()
            .len(),
        before
    );
}

/// Out of steps: what was written is kept as an unfinished version, and the next run starts
/// from it (the message says so, and it is true).
#[tokio::test]
async fn a_run_out_of_steps_keeps_its_files_as_an_unfinished_version() {
    let r = rig_with(Backend::Sqlite, |c| c.agent.max_iterations = 2).await;
    r.llm.push([
        Turn::tool(
            "createOrUpdateFiles",
            json!({"files": [{"path": "src/App.tsx", "content": APP}]}),
        ),
        Turn::tool("terminal", json!({"command": "echo still going"})),
    ]);
    let project = r
        .services
        .create_project(&Actor::Local, "Build a counter", None, None)
        .await
        .unwrap();
    let pid = project.id.to_string();
    let events = until_runs_end(&r.services, &pid, 0, 1).await;
    assert_eq!(events.last().unwrap().event.kind(), "run_failed");
    let msgs = r.services.list_messages(&Actor::Local, &pid).await.unwrap();
    assert_eq!(msgs.len(), 2);
    assert!(
        msgs[1].content.contains("kept as an unfinished version")
            && msgs[1].content.contains("all 2 of its steps"),
        "{}",
        msgs[1].content
    );
    let frag = msgs[1].fragment.as_ref().expect("an unfinished version");
    assert_eq!(frag.title, "Unfinished Work");
    assert_eq!(frag.files["src/App.tsx"], APP);

    // The follow-up's sandbox holds the unfinished files.
    r.llm.push([
        Turn::tool("readFiles", json!({"files": ["src/App.tsx"]})),
        Turn::text("<task_summary>Finished the counter.</task_summary>"),
    ]);
    let last = events.last().unwrap().seq;
    r.services
        .create_message(&Actor::Local, &pid, "continue", None)
        .await
        .unwrap();
    let events = until_runs_end(&r.services, &pid, last, 1).await;
    assert_eq!(events.last().unwrap().event.kind(), "run_finished");
    let read = r.llm.agent_requests().last().unwrap().messages();
    let result = read.iter().rev().find(|m| m["role"] == "tool").unwrap()["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(result.contains("MARKER-ONE"), "{result}");
}
