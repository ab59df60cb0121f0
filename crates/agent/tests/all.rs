//! The agent loop against a scripted OpenAI-compatible server over HTTP, on a real sandbox.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use codeflux_agent::{AgentConfig, AgentError, EventSink, Task};
use codeflux_llm::{ClientOptions, Endpoint, LlmClient};
use codeflux_protocol::{CheckStatus, Role, RunEvent, Template};
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
    rig_with(false).await
}

/// With `dev_servers`, the sandbox runs the app's dev server and the check loads its page.
async fn rig_with(dev_servers: bool) -> Rig {
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
        dev_servers,
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
        vec![
            "terminal",
            "createOrUpdateFiles",
            "readFiles",
            "editFile",
            "checkApp"
        ]
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
        .write_file("src/a.ts", "export const a = 1;\nexport const b = 1;\n")
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
        "export const a = 1;\nexport const b = 2;\n"
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
                json!({"files": [{"path": format!("src/f{i}.ts"), "content": format!("export const s{i} = \"{big}\";\n")}]}),
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

fn write_app(content: &str) -> Turn {
    Turn::tool(
        "createOrUpdateFiles",
        json!({"files": [{"path": "src/App.tsx", "content": content}]}),
    )
}

fn checks(events: &Events) -> Vec<(bool, u32)> {
    events
        .all()
        .iter()
        .filter_map(|e| match e {
            RunEvent::Checked { passed, round, .. } => Some((*passed, *round)),
            _ => None,
        })
        .collect()
}

const GOOD_APP: &str = "export default function App() {\n  return <h1>Habits</h1>;\n}\n";

/// Each kind of error is found by the check without the model asking, goes back to the model
/// as the result of a `checkApp` call it did not make, with the file and the message, and is
/// fixed on the next turn; the result says it was checked.
#[tokio::test]
async fn type_compile_and_render_errors_are_found_sent_back_and_fixed() {
    let r = rig_with(true).await;
    let cases = [
        (
            "type error",
            "export default function App() {\n  const count: number = \"three\";\n  return <h1>{count}</h1>;\n}\n",
            vec!["type check", "src/App.tsx:2", "TS2322"],
        ),
        (
            "compile error",
            "export default function App() {\n  return <h1>Habits</h1;\n}\n",
            vec!["src/App.tsx"],
        ),
        (
            "render-time exception",
            "export default function App() {\n  const habits = (window as unknown as { saved?: string[] }).saved;\n  return <ul>{habits!.map((h) => <li key={h}>{h}</li>)}</ul>;\n}\n",
            vec!["page load", "Cannot read properties of undefined"],
        ),
    ];
    for (what, broken, expected) in cases {
        r.llm.push([
            write_app(broken),
            Turn::text("<task_summary>Built the habits page.</task_summary>"),
            write_app(GOOD_APP),
            Turn::text("<task_summary>Fixed the habits page.</task_summary>"),
        ]);
        let before = r.llm.agent_requests().len();
        let events = Events::default();
        let out = codeflux_agent::run(
            &r.client,
            r.sandbox.as_ref(),
            &events,
            &task("a habits page"),
            &AgentConfig::default(),
        )
        .await
        .unwrap();
        let requests = r.llm.agent_requests();
        assert_eq!(requests.len() - before, 4, "{what}: one fix round");
        // The third request carries the unasked check: an assistant call and its result.
        let msgs = requests[before + 2].messages();
        let last = msgs.last().unwrap();
        assert_eq!(last["role"], "tool", "{what}: {last}");
        assert_eq!(last["tool_call_id"], "cf_check_1");
        let feedback = last["content"].as_str().unwrap();
        for e in &expected {
            assert!(feedback.contains(e), "{what}: {e:?} not in {feedback}");
        }
        assert!(feedback.contains("fix round 1 of 3"), "{feedback}");
        let call = &msgs[msgs.len() - 2];
        assert_eq!(call["role"], "assistant");
        assert_eq!(call["tool_calls"][0]["function"]["name"], "checkApp");
        assert_eq!(call["tool_calls"][0]["id"], "cf_check_1");

        assert_eq!(checks(&events), vec![(false, 0), (true, 1)], "{what}");
        let report = out.checks.expect("checked");
        assert!(report.passed(), "{what}: {report:?}");
        assert_eq!(report.rounds, 1);
        let page = report.items.iter().find(|i| i.name == "page load").unwrap();
        assert_eq!(
            page.status,
            CheckStatus::Passed,
            "{what}: the page was loaded"
        );
        assert_eq!(out.summary, "Fixed the habits page.");
        assert!(!out.reply.contains("Warning"), "{}", out.reply);
    }
}

/// A model that never fixes: after the rounds the result says so plainly, and no cheerful
/// reply is asked for.
#[tokio::test]
async fn a_model_that_never_fixes_ends_with_an_honest_warning() {
    let r = rig().await;
    let broken =
        "export default function App() {\n  const n: number = \"x\";\n  return <p>{n}</p>;\n}\n";
    let mut turns = vec![write_app(broken)];
    turns.extend((0..3).map(|_| Turn::text("<task_summary>All done, it works.</task_summary>")));
    r.llm.push(turns);
    let events = Events::default();
    let cfg = AgentConfig {
        fix_rounds: 2,
        ..AgentConfig::default()
    };
    let out = codeflux_agent::run(&r.client, r.sandbox.as_ref(), &events, &task("x"), &cfg)
        .await
        .unwrap();
    assert_eq!(checks(&events), vec![(false, 0), (false, 1), (false, 2)]);
    let report = out.checks.clone().unwrap();
    assert!(!report.passed());
    assert_eq!(report.rounds, 2);
    assert!(
        out.reply.starts_with("All done, it works.")
            && out.reply.contains("**Warning:**")
            && out.reply.contains("after 2 fix rounds")
            && out.reply.contains("src/App.tsx:2"),
        "{}",
        out.reply
    );
    // Three agent turns with tools, the title; no reply call (the reply is the warning).
    assert_eq!(r.llm.agent_requests().len(), 4);
    assert_eq!(out.requests, 5);
}

/// A model that answers without tool calls is switched to tool calls written as text; those
/// are run like native ones.
#[tokio::test]
async fn a_model_without_native_tool_calls_is_switched_to_the_text_protocol() {
    let r = rig().await;
    r.llm.push([
        Turn::text("I would create the file src/App.tsx with a heading."),
        Turn::text("Sure, here is the plan again."),
        Turn::text(format!(
            "Writing it now.\n<tool_call>{}</tool_call>",
            json!({"name": "createOrUpdateFiles", "arguments": {"files": [{"path": "src/App.tsx", "content": GOOD_APP}]}})
        )),
        Turn::text("<task_summary>Wrote the page.</task_summary>"),
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
    assert_eq!(r.sandbox.read_file("src/App.tsx").await.unwrap(), GOOD_APP);
    assert_eq!(out.files_written, vec!["src/App.tsx"]);
    let reqs = r.llm.requests();
    // The third request asks in text mode: no tools offered, the protocol in the system prompt.
    let third = &reqs[2];
    assert!(!third.has_tools(), "text mode offers no native tools");
    let system = third.messages()[0]["content"].as_str().unwrap().to_owned();
    assert!(system.contains("<tool_call>"), "{system}");
    // The result came back as text the model can read.
    let fourth = reqs[3].messages();
    let result = fourth.last().unwrap()["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        result.contains("<tool_result name=\"createOrUpdateFiles\">"),
        "{result}"
    );
    assert!(
        events.all().iter().any(|e| matches!(e, RunEvent::Notice { message } if message.contains("switching to tool calls written as text"))),
        "the switch is told"
    );
}

/// A model that acts in neither way ends early with the cause named, long before the step limit.
#[tokio::test]
async fn a_model_that_never_calls_tools_ends_early_naming_the_cause() {
    let r = rig().await;
    r.llm
        .push((0..6).map(|i| Turn::text(format!("Here is how you could build it, part {i}."))));
    let err = codeflux_agent::run(
        &r.client,
        r.sandbox.as_ref(),
        &Events::default(),
        &task("x"),
        &AgentConfig::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, AgentError::NoToolUse { answers: 4, .. }),
        "{err:?}"
    );
    assert_eq!(err.class(), "no_tool_use");
    assert!(err.to_string().contains("scripted") && err.to_string().contains("Pick another model"));
    assert_eq!(r.llm.requests().len(), 4, "4 of 30 steps used");
}

/// An answer cut at the output limit: the incomplete tool call is never run, the model is asked
/// to go on in smaller pieces; cut again and again, the run ends saying why.
#[tokio::test]
async fn a_tool_call_cut_at_the_output_limit_is_never_run() {
    let r = rig().await;
    let cut_call = |path: &str| {
        Turn::Raw(vec![
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_cut",
                "type": "function", "function": {"name": "createOrUpdateFiles",
                "arguments": format!("{{\"files\": [{{\"path\": \"{path}\", \"content\": \"export const a")}}]}}]}).to_string(),
            json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]}).to_string(),
        ])
    };
    r.llm.push([
        cut_call("src/cut.ts"),
        write_app(GOOD_APP),
        Turn::text("<task_summary>Done in smaller pieces.</task_summary>"),
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
    assert_eq!(out.files_written, vec!["src/App.tsx"]);
    assert!(
        r.sandbox.read_file("src/cut.ts").await.is_err(),
        "the cut call never ran"
    );
    let second = r.llm.agent_requests()[1].messages();
    let ask = second.last().unwrap()["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(ask.contains("cut off"), "{ask}");

    let r = rig().await;
    r.llm
        .push((0..3).map(|i| cut_call(&format!("src/c{i}.ts"))));
    let err = codeflux_agent::run(
        &r.client,
        r.sandbox.as_ref(),
        &Events::default(),
        &task("x"),
        &AgentConfig::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, AgentError::Truncated(3)), "{err:?}");
    assert!(err.to_string().contains("output limit"));
}
