//! The agent loop against a scripted OpenAI-compatible server over HTTP, on a real sandbox.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use codeflux_agent::{AgentConfig, AgentError, EventSink, Task};
use codeflux_llm::{ClientOptions, Endpoint, LlmClient};
use codeflux_protocol::{Role, RunEvent, Template};
use codeflux_sandbox::local::{LocalConfig, LocalProvider};
use codeflux_sandbox::{Sandbox, SandboxProvider};
use codeflux_test_support::scripted_llm::{ScriptedLlm, Turn};
use serde_json::{Value, json};

#[derive(Default)]
struct Events(Mutex<Vec<RunEvent>>);

#[async_trait]
impl EventSink for Events {
    async fn emit(&self, event: RunEvent) {
        self.0.lock().unwrap().push(event);
    }
}

impl Events {
    fn all(&self) -> Vec<RunEvent> {
        self.0.lock().unwrap().clone()
    }
}

struct Rig {
    llm: ScriptedLlm,
    client: LlmClient,
    sandbox: Arc<dyn Sandbox>,
    _data: tempfile::TempDir,
}

async fn rig() -> Rig {
    let llm = ScriptedLlm::start().await.unwrap();
    let client = LlmClient::new(
        Endpoint {
            provider: "custom".into(),
            base_url: llm.base_url.clone(),
            api_key: Some("k".into()),
            model: "scripted".into(),
        },
        ClientOptions {
            backoff_min: Duration::from_millis(10),
            backoff_max: Duration::from_millis(20),
            idle_timeout: Duration::from_secs(10),
            ..ClientOptions::default()
        },
    )
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let templates = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sandbox-templates");
    let provider = LocalProvider::new(LocalConfig {
        dev_servers: false,
        ..LocalConfig::new(data.path().to_path_buf(), templates, 3000).with_host_npm()
    })
    .unwrap();
    let sandbox = provider
        .open(uuid::Uuid::new_v4(), Template::ViteReact, None)
        .await
        .unwrap();
    Rig {
        llm,
        client,
        sandbox,
        _data: data,
    }
}

fn task(prompt: &str) -> Task {
    Task {
        template: Template::ViteReact,
        history: Vec::new(),
        prompt: prompt.into(),
        follow_up: false,
    }
}

fn tool_results(llm: &ScriptedLlm) -> Vec<String> {
    let last = llm.agent_requests().pop().unwrap();
    last.messages()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap_or_default().to_owned())
        .collect()
}

const APP: &str = "export default function App() {\n  return <h1 className=\"p-8\">Counter \"quoted\" \\ ü</h1>;\n}\n";

#[tokio::test]
async fn golden_path_writes_reads_runs_and_summarises() {
    let r = rig().await;
    r.llm.push([
        Turn::TextAndTools(
            "I'll write the app.".into(),
            vec![(
                "createOrUpdateFiles".into(),
                json!({"files": [{"path": "src/App.tsx", "content": APP}]}).to_string(),
            )],
        ),
        Turn::tool("readFiles", json!({"files": ["src/App.tsx"]})),
        Turn::tool(
            "terminal",
            json!({"command": "ls src && echo TERMINAL-RAN"}),
        ),
        Turn::text("All done.\n<task_summary>Built a counter app.</task_summary>"),
    ]);
    let events = Events::default();
    let out = codeflux_agent::run(
        &r.client,
        r.sandbox.as_ref(),
        &events,
        &task("Build a counter"),
        &AgentConfig::default(),
    )
    .await
    .unwrap();
    assert_eq!(out.summary, "Built a counter app.");
    assert_eq!(out.title, "Counter App");
    assert_eq!(out.reply, "Your app is ready to try.");
    assert_eq!(out.iterations, 4);
    assert_eq!(out.files_written, vec!["src/App.tsx"]);
    assert_eq!(r.sandbox.read_file("src/App.tsx").await.unwrap(), APP);

    let results = tool_results(&r.llm);
    assert!(
        results[0].contains("Wrote 1 file(s): src/App.tsx"),
        "{results:?}"
    );
    assert!(
        results[1].contains("Counter \\\"quoted\\\""),
        "readFiles returned the file: {}",
        results[1]
    );
    assert!(
        results[2].starts_with("exit code 0")
            && results[2].contains("TERMINAL-RAN")
            && results[2].contains("App.tsx"),
        "{}",
        results[2]
    );

    // Requests: streamed, tools offered, the system prompt for the template, the task with the file list.
    let reqs = r.llm.agent_requests();
    assert_eq!(reqs.len(), 4);
    let first = &reqs[0].body;
    assert_eq!(first["stream"], true);
    let names: Vec<&str> = first["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec!["terminal", "createOrUpdateFiles", "readFiles", "editFile"]
    );
    assert!(
        first["messages"][0]["content"]
            .as_str()
            .unwrap()
            .contains("Vite")
    );
    let task_text = first["messages"][1]["content"].as_str().unwrap();
    assert!(
        task_text.contains("Build a counter") && task_text.contains("package.json"),
        "{task_text}"
    );
    // Every tool call got exactly one result, in order.
    let last = reqs[3].messages();
    let call_ids: Vec<String> = last
        .iter()
        .flat_map(|m| m["tool_calls"].as_array().cloned().unwrap_or_default())
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    let result_ids: Vec<String> = last
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["tool_call_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(call_ids, result_ids);

    let ev = events.all();
    let text: String = ev
        .iter()
        .filter_map(|e| match e {
            RunEvent::TextDelta { text } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert!(text.contains("I'll write the app.") && text.contains("All done."));
    assert!(
        ev.iter()
            .any(|e| matches!(e, RunEvent::FileWritten { path } if path == "src/App.tsx"))
    );
    assert!(ev.iter().any(|e| matches!(e, RunEvent::ToolCall { name, summary, .. } if name == "terminal" && summary.contains("ls src"))));
    assert!(ev.iter().any(|e| matches!(e, RunEvent::ToolOutput { ok: true, exit_code: Some(0), tail, .. } if tail.contains("TERMINAL-RAN"))));
    // Title and reply: two short calls without tools, about the summary.
    let aux: Vec<_> = r
        .llm
        .requests()
        .into_iter()
        .filter(|q| !q.has_tools())
        .collect();
    assert_eq!(aux.len(), 2);
    assert!(
        aux[0].messages()[1]["content"]
            .as_str()
            .unwrap()
            .contains("Built a counter app.")
    );
}

#[tokio::test]
async fn tool_failures_go_back_to_the_model() {
    let r = rig().await;
    r.llm.push([
        Turn::Raw(vec![
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "bad1", "type": "function", "function": {"name": "createOrUpdateFiles", "arguments": "{\"files\": [{\"path\": "}}]}}]}).to_string(),
            json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}).to_string(),
        ]),
        Turn::tool("deleteEverything", json!({"path": "/"})),
        Turn::tools(vec![
            ("readFiles", json!({"files": ["/etc/passwd", "../../etc/passwd", "missing.ts"]})),
            ("createOrUpdateFiles", json!({"files": [{"path": "../escape.txt", "content": "x"}, {"path": "ok.txt", "content": "fine"}]})),
        ]),
        Turn::tool("editFile", json!({"path": "ok.txt", "search": "nothere", "replace": "x"})),
        Turn::tool("terminal", json!({"command": "npm run dev"})),
        Turn::tool("terminal", json!({"command": "exit 4"})),
        Turn::text("<task_summary>Handled errors.</task_summary>"),
    ]);
    let events = Events::default();
    let out = codeflux_agent::run(
        &r.client,
        r.sandbox.as_ref(),
        &events,
        &task("x"),
        &AgentConfig::default(),
    )
    .await
    .unwrap();
    assert_eq!(out.summary, "Handled errors.");
    let results = tool_results(&r.llm);
    assert!(results[0].contains("not valid JSON"), "{}", results[0]);
    assert!(
        results[1].contains("no tool named \"deleteEverything\""),
        "{}",
        results[1]
    );
    assert!(
        results[2].contains("absolute paths are not allowed")
            && results[2].contains("\\\"..\\\" is not allowed")
            && results[2].contains("does not exist"),
        "{}",
        results[2]
    );
    assert!(!results[2].contains("root:x:0:0"));
    assert!(
        results[3].contains("Wrote 1 file(s): ok.txt") && results[3].contains("Not written"),
        "{}",
        results[3]
    );
    assert!(results[4].contains("not found"), "{}", results[4]);
    assert!(results[5].contains("already running"), "{}", results[5]);
    assert!(results[6].starts_with("exit code 4"), "{}", results[6]);
    assert_eq!(r.sandbox.read_file("ok.txt").await.unwrap(), "fine");
    assert!(events.all().iter().any(|e| matches!(
        e,
        RunEvent::ToolOutput {
            ok: false,
            exit_code: Some(4),
            ..
        }
    )));
}

#[tokio::test]
async fn edit_file_changes_exactly_one_place() {
    let r = rig().await;
    r.sandbox
        .write_file("src/a.ts", "const a = 1;\nconst b = 1;\n")
        .await
        .unwrap();
    r.llm.push([
        Turn::tool(
            "editFile",
            json!({"path": "src/a.ts", "search": "= 1;", "replace": "= 2;"}),
        ),
        Turn::tool(
            "editFile",
            json!({"path": "src/a.ts", "search": "const b = 1;", "replace": "const b = 2;"}),
        ),
        Turn::text("<task_summary>Edited.</task_summary>"),
    ]);
    let events = Events::default();
    let out = codeflux_agent::run(
        &r.client,
        r.sandbox.as_ref(),
        &events,
        &task("x"),
        &AgentConfig::default(),
    )
    .await
    .unwrap();
    let results = tool_results(&r.llm);
    assert!(results[0].contains("occurs 2 times"), "{}", results[0]);
    assert!(results[1].starts_with("Edited src/a.ts"), "{}", results[1]);
    assert_eq!(
        r.sandbox.read_file("src/a.ts").await.unwrap(),
        "const a = 1;\nconst b = 2;\n"
    );
    assert_eq!(out.files_written, vec!["src/a.ts"]);
}

#[tokio::test]
async fn text_without_a_summary_is_nudged_and_the_limit_holds() {
    let r = rig().await;
    r.llm.push([
        Turn::text("Thinking about it..."),
        Turn::text("<task_summary>Done after a nudge.</task_summary>"),
    ]);
    let events = Events::default();
    let out = codeflux_agent::run(
        &r.client,
        r.sandbox.as_ref(),
        &events,
        &task("x"),
        &AgentConfig::default(),
    )
    .await
    .unwrap();
    assert_eq!(out.summary, "Done after a nudge.");
    let second = &r.llm.agent_requests()[1];
    let last = second.messages().pop().unwrap();
    assert_eq!(last["role"], "user");
    assert!(last["content"].as_str().unwrap().contains("task_summary"));

    let r = rig().await;
    r.llm
        .push((0..3).map(|i| Turn::tool("terminal", json!({"command": format!("echo step {i}")}))));
    let cfg = AgentConfig {
        max_iterations: 3,
        ..AgentConfig::default()
    };
    let err = codeflux_agent::run(&r.client, r.sandbox.as_ref(), &events, &task("x"), &cfg)
        .await
        .unwrap_err();
    assert!(matches!(err, AgentError::IterationLimit(3)), "{err}");
    assert_eq!(err.class(), "iteration_limit");
    assert_eq!(r.llm.agent_requests().len(), 3);
}

#[tokio::test]
async fn history_is_sent_and_model_errors_end_the_run() {
    let r = rig().await;
    r.llm
        .push([Turn::status(401, r#"{"error":{"message":"bad key"}}"#)]);
    let t = Task {
        history: vec![
            (Role::User, "first ask".into()),
            (Role::Assistant, "first answer".into()),
        ],
        follow_up: true,
        ..task("second ask")
    };
    let err = codeflux_agent::run(
        &r.client,
        r.sandbox.as_ref(),
        &Events::default(),
        &t,
        &AgentConfig::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.class(), "auth");
    let msgs = r.llm.agent_requests()[0].messages();
    let roles: Vec<&str> = msgs.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, vec!["system", "user", "assistant", "user"]);
    assert_eq!(msgs[1]["content"], "first ask");
    assert!(
        msgs[3]["content"]
            .as_str()
            .unwrap()
            .contains("change to the app")
    );
}

/// A scripted 10-step run: the context sent per request must stay bounded.
#[tokio::test]
async fn context_stays_bounded_over_a_long_run() {
    let r = rig().await;
    let big = "x".repeat(20_000);
    let mut turns: Vec<Turn> = (0..10)
        .map(|i| {
            Turn::tool(
                "createOrUpdateFiles",
                json!({"files": [{"path": format!("src/f{i}.ts"), "content": big}]}),
            )
        })
        .collect();
    turns.push(Turn::text("<task_summary>Ten files.</task_summary>"));
    r.llm.push(turns);
    let cfg = AgentConfig {
        context_budget_chars: 60_000,
        ..AgentConfig::default()
    };
    let out = codeflux_agent::run(
        &r.client,
        r.sandbox.as_ref(),
        &Events::default(),
        &task("x"),
        &cfg,
    )
    .await
    .unwrap();
    assert_eq!(out.iterations, 11);
    let sizes: Vec<usize> = r
        .llm
        .agent_requests()
        .iter()
        .map(|q| {
            q.messages()
                .iter()
                .map(|m| m.to_string().len())
                .sum::<usize>()
        })
        .collect();
    let max = *sizes.iter().max().unwrap();
    // 10 x 20 KB of file content was written; the request stays near the budget.
    assert!(max < 80_000, "largest request {max} bytes: {sizes:?}");
    let v: Value = r.llm.agent_requests().last().unwrap().body.clone();
    assert!(
        v["messages"]
            .to_string()
            .contains("left out to save context")
    );
}
