//! Runs through the real server: the scripted model behind LLM_BASE_URL, progress over SSE
//! read by a real client, replay with Last-Event-ID, cancellation, restart recovery.

use std::sync::Arc;
use std::time::Duration;

use codeflux_test_support::scripted_llm::{ScriptedLlm, Turn};
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use serde_json::json;
use tokio::sync::Notify;

use crate::support::{call, http, is_end, sse, start_with_model};

#[tokio::test]
async fn a_run_streams_over_sse_and_replays_from_last_event_id() {
    let llm = ScriptedLlm::start().await.unwrap();
    llm.push([
        Turn::TextAndTools(
            "Writing the page.".into(),
            vec![("createOrUpdateFiles".into(), json!({"files": [{"path": "src/App.tsx", "content": "export default () => <h1>SSE-MARKER</h1>;\n"}]}).to_string())],
        ),
        Turn::tool("terminal", json!({"command": "echo TERMINAL-OK"})),
        Turn::text("<task_summary>A page.</task_summary>"),
    ]);
    let data = tempfile::tempdir().unwrap();
    let srv = start_with_model(data.path(), &llm, None);
    let (st, p) = call(
        &srv.base_url,
        "projects/create",
        &[("prompt", "Build a page")],
    )
    .await;
    assert_eq!(st, 200);
    let pid = p["id"].as_str().unwrap().to_owned();

    let events = sse(&srv.base_url, &pid, None, is_end).await;
    let ids: Vec<i64> = events
        .iter()
        .map(|(id, _, _)| id.parse().unwrap())
        .collect();
    assert_eq!(
        ids,
        (1..=ids.len() as i64).collect::<Vec<_>>(),
        "every event has an increasing id"
    );
    let kinds: Vec<&str> = events.iter().map(|(_, k, _)| k.as_str()).collect();
    for k in [
        "run_queued",
        "run_started",
        "text_delta",
        "tool_call",
        "file_written",
        "tool_output",
        "run_finished",
    ] {
        assert!(kinds.contains(&k), "{k} missing in {kinds:?}");
    }
    let (_, _, last) = events.last().unwrap();
    assert_eq!(last["title"], "Counter App");
    assert_eq!(last["type"], "run_finished");
    let output = events
        .iter()
        .find(|(_, k, d)| k == "tool_output" && d["exit_code"] == 0)
        .unwrap();
    assert!(output.2["tail"].as_str().unwrap().contains("TERMINAL-OK"));

    // A reconnect with Last-Event-ID gets exactly the later events.
    let again = sse(&srv.base_url, &pid, Some("2"), is_end).await;
    assert_eq!(again[0].0, "3");
    assert_eq!(again.len(), events.len() - 2);
    assert_eq!(
        again.iter().map(|e| &e.2).collect::<Vec<_>>(),
        events[2..].iter().map(|e| &e.2).collect::<Vec<_>>()
    );
    // The same through the query string (EventSource's first connection cannot set headers).
    let res = http()
        .get(format!(
            "{}/api/projects/{pid}/events?last_event_id={}",
            srv.base_url,
            ids.len() - 1
        ))
        .send()
        .await
        .unwrap();
    let mut s = res.bytes_stream().eventsource();
    let first = s.next().await.unwrap().unwrap();
    assert_eq!(first.id, ids.len().to_string());

    let (_, msgs) = call(&srv.base_url, "messages/get_many", &[("project_id", &pid)]).await;
    let msgs = msgs.as_array().unwrap();
    assert_eq!(msgs[1]["role"], "ASSISTANT");
    assert_eq!(msgs[1]["type"], "RESULT");
    assert_eq!(
        msgs[1]["fragment"]["files"]["src/App.tsx"],
        "export default () => <h1>SSE-MARKER</h1>;\n"
    );
    assert!(
        msgs[1]["fragment"]["sandbox_url"]
            .as_str()
            .unwrap()
            .contains(&format!("{pid}.preview.localhost"))
    );
    // The key never reaches the sandbox; it reached the model.
    assert_eq!(
        llm.requests()[0].headers["authorization"],
        "Bearer sk-sse-test"
    );

    for (bad, status) in [("nope", 400), ("00000000-0000-4000-8000-000000000000", 404)] {
        let res = http()
            .get(format!("{}/api/projects/{bad}/events", srv.base_url))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), status);
    }
}

#[tokio::test]
async fn runs_cancel_stops_a_working_run() {
    let llm = ScriptedLlm::start().await.unwrap();
    let gate = Arc::new(Notify::new());
    llm.push([Turn::Gated {
        turn: Box::new(Turn::text("never finished because")),
        at: 2,
        gate: gate.clone(),
    }]);
    let data = tempfile::tempdir().unwrap();
    let srv = start_with_model(data.path(), &llm, None);
    let (_, p) = call(&srv.base_url, "projects/create", &[("prompt", "slow")]).await;
    let pid = p["id"].as_str().unwrap().to_owned();
    assert!(llm.wait_requests(1, Duration::from_secs(20)).await);
    let (_, active) = call(&srv.base_url, "runs/active", &[("project_id", &pid)]).await;
    assert_eq!(active[0]["status"], "running");
    let (st, body) = call(&srv.base_url, "runs/cancel", &[("project_id", &pid)]).await;
    assert_eq!((st, body["cancelled"].as_u64()), (200, Some(1)));
    let events = sse(&srv.base_url, &pid, None, is_end).await;
    assert_eq!(events.last().unwrap().1, "run_cancelled");
    let (st, _) = call(&srv.base_url, "runs/cancel", &[("project_id", "bad")]).await;
    assert_eq!(st, 400);
    gate.notify_waiters();
}

#[tokio::test]
async fn a_restart_resumes_the_working_run() {
    let llm = ScriptedLlm::start().await.unwrap();
    let gate = Arc::new(Notify::new());
    llm.push([Turn::Gated {
        turn: Box::new(Turn::text("working on it for a long time")),
        at: 2,
        gate: gate.clone(),
    }]);
    let data = tempfile::tempdir().unwrap();
    let srv = start_with_model(data.path(), &llm, None);
    let (_, p) = call(&srv.base_url, "projects/create", &[("prompt", "long one")]).await;
    let pid = p["id"].as_str().unwrap().to_owned();
    assert!(llm.wait_requests(1, Duration::from_secs(20)).await);
    let addr = srv.addr().to_owned();
    // A clean stop gives the run's lease back: the restarted server resumes it at once.
    srv.stop().unwrap();
    gate.notify_waiters();
    llm.push([Turn::text(
        "<task_summary>Done after the restart.</task_summary>",
    )]);

    let srv = start_with_model(data.path(), &llm, Some(addr));
    let events = sse(&srv.base_url, &pid, None, is_end).await;
    assert_eq!(events.last().unwrap().1, "run_finished", "{events:?}");
    let (_, msgs) = call(&srv.base_url, "messages/get_many", &[("project_id", &pid)]).await;
    let msgs = msgs.as_array().unwrap();
    assert_eq!(msgs.len(), 2, "one request, one answer: {msgs:?}");
    assert_eq!(msgs[1]["type"], "RESULT");
}

#[tokio::test]
async fn without_a_provider_the_error_says_what_to_set() {
    let data = tempfile::tempdir().unwrap();
    let srv = crate::support::start(data.path(), None, None);
    let (_, status) = call(&srv.base_url, "system/status", &[]).await;
    assert!(
        status["llm_problem"]
            .as_str()
            .unwrap()
            .contains("OPENROUTER_API_KEY")
    );
    let (_, p) = call(&srv.base_url, "projects/create", &[("prompt", "anything")]).await;
    let pid = p["id"].as_str().unwrap().to_owned();
    let events = sse(&srv.base_url, &pid, None, is_end).await;
    assert_eq!(events.last().unwrap().1, "run_failed");
    let (_, msgs) = call(&srv.base_url, "messages/get_many", &[("project_id", &pid)]).await;
    let err = &msgs.as_array().unwrap()[1];
    assert_eq!(
        (err["role"].as_str(), err["type"].as_str()),
        (Some("ASSISTANT"), Some("ERROR"))
    );
    assert!(err["content"].as_str().unwrap().contains("LLM_BASE_URL"));
}
