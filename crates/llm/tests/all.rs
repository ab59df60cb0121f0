//! The client against a scripted OpenAI-compatible server over loopback HTTP.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use codeflux_llm::{
    ChatMessage, ChatRequest, ClientOptions, Endpoint, ErrorKind, LlmClient, LlmEvent, ToolSpec,
};
use codeflux_test_support::scripted_llm::{ScriptedLlm, Turn};
use serde_json::json;

fn fast() -> ClientOptions {
    ClientOptions {
        connect_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_millis(500),
        max_attempts: 3,
        backoff_min: Duration::from_millis(10),
        backoff_max: Duration::from_millis(50),
        max_retry_after: Duration::from_secs(5),
        models_ttl: Duration::from_secs(60),
    }
}

fn client(llm: &ScriptedLlm, opts: ClientOptions) -> LlmClient {
    LlmClient::new(
        Endpoint {
            provider: "custom".into(),
            base_url: llm.base_url.clone(),
            api_key: Some("sk-test-123".into()),
            model: "scripted".into(),
        },
        opts,
    )
    .unwrap()
}

fn request() -> ChatRequest {
    ChatRequest {
        messages: vec![ChatMessage::system("be brief"), ChatMessage::user("hello")],
        tools: vec![ToolSpec::function(
            "terminal",
            "run a command",
            json!({"type": "object", "properties": {"command": {"type": "string"}}}),
        )],
        temperature: Some(0.1),
        max_tokens: None,
    }
}

async fn collect(
    c: &LlmClient,
    req: &ChatRequest,
) -> (
    Vec<LlmEvent>,
    Result<codeflux_llm::Completion, codeflux_llm::LlmError>,
) {
    let mut s = c.stream(req);
    let mut events = Vec::new();
    while let Some(ev) = s.next().await {
        match ev {
            Ok(LlmEvent::Done(done)) => return (events, Ok(done)),
            Ok(ev) => events.push(ev),
            Err(e) => return (events, Err(e)),
        }
    }
    panic!("stream ended without a result");
}

#[tokio::test]
async fn streams_text_and_sends_the_request_right() {
    let llm = ScriptedLlm::start().await.unwrap();
    llm.push([Turn::text("Hello there, this is a streamed answer.")]);
    let c = client(&llm, fast());
    let (events, done) = collect(&c, &request()).await;
    let done = done.unwrap();
    assert_eq!(done.content, "Hello there, this is a streamed answer.");
    let text: String = events
        .iter()
        .filter_map(|e| match e {
            LlmEvent::TextDelta(t) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(text, done.content);
    assert!(events.len() > 3, "arrives in pieces");
    assert_eq!(done.usage.unwrap().prompt_tokens, 100);
    assert_eq!(done.finish_reason.as_deref(), Some("stop"));

    let req = &llm.requests()[0];
    assert_eq!(
        req.headers.get("authorization").map(String::as_str),
        Some("Bearer sk-test-123")
    );
    assert_eq!(req.body["model"], "scripted");
    assert_eq!(req.body["stream"], true);
    assert_eq!(req.body["messages"][1]["role"], "user");
    assert_eq!(req.body["tools"][0]["function"]["name"], "terminal");
}

#[tokio::test]
async fn assembles_several_tool_calls_with_split_arguments() {
    let llm = ScriptedLlm::start().await.unwrap();
    let content = "const s = \"quoted \\\\ backslash\";\n// ü ✓\n".repeat(20);
    llm.push([Turn::TextAndTools(
        "Let me write two files.".into(),
        vec![
            (
                "createOrUpdateFiles".into(),
                json!({"files": [{"path": "src/a.ts", "content": content}]}).to_string(),
            ),
            ("terminal".into(), json!({"command": "ls -la"}).to_string()),
        ],
    )]);
    let c = client(&llm, fast());
    let (events, done) = collect(&c, &request()).await;
    let done = done.unwrap();
    assert_eq!(done.content, "Let me write two files.");
    assert_eq!(done.tool_calls.len(), 2);
    let args: serde_json::Value =
        serde_json::from_str(&done.tool_calls[0].function.arguments).unwrap();
    assert_eq!(
        args["files"][0]["content"], content,
        "arguments reassembled byte for byte"
    );
    assert_eq!(done.tool_calls[1].function.name, "terminal");
    assert_ne!(done.tool_calls[0].id, done.tool_calls[1].id);
    assert!(events.contains(&LlmEvent::ToolCallStarted {
        index: 1,
        name: "terminal".into()
    }));
}

#[tokio::test]
async fn done_without_finish_reason_and_finish_without_done_are_both_complete() {
    let llm = ScriptedLlm::start().await.unwrap();
    let c1 = |t: &str| json!({"choices": [{"index": 0, "delta": {"content": t}}]}).to_string();
    llm.push([Turn::Raw(vec![c1("no "), c1("finish reason")])]);
    let c = client(&llm, fast());
    assert_eq!(
        c.complete(&request()).await.unwrap().content,
        "no finish reason"
    );

    // finish_reason but the stream then closes without [DONE]: complete too.
    llm.push([Turn::Cut {
        turn: Box::new(Turn::text("ok")),
        after: 3,
    }]);
    let done = c.complete(&request()).await.unwrap();
    assert_eq!(done.content, "ok");
}

#[tokio::test]
async fn retries_429_honouring_retry_after_then_succeeds() {
    let llm = ScriptedLlm::start().await.unwrap();
    llm.push([
        Turn::Status {
            status: 429,
            headers: vec![("retry-after".into(), "1".into())],
            body: json!({"error": {"message": "slow down"}}).to_string(),
        },
        Turn::text("after the wait"),
    ]);
    let c = client(&llm, fast());
    let t0 = Instant::now();
    let (events, done) = collect(&c, &request()).await;
    assert_eq!(done.unwrap().content, "after the wait");
    assert!(
        t0.elapsed() >= Duration::from_millis(950),
        "waited for Retry-After: {:?}",
        t0.elapsed()
    );
    let retry = events.iter().find_map(|e| match e {
        LlmEvent::Retrying {
            attempt,
            reason,
            wait,
            ..
        } => Some((*attempt, reason.clone(), *wait)),
        _ => None,
    });
    let (attempt, reason, wait) = retry.expect("a retry notice");
    assert_eq!(attempt, 2);
    assert!(reason.contains("slow down"), "{reason}");
    assert!(wait >= Duration::from_secs(1));
    assert_eq!(llm.requests().len(), 2);
}

#[tokio::test]
async fn a_stream_cut_midway_is_retried_and_flagged() {
    let llm = ScriptedLlm::start().await.unwrap();
    llm.push([
        Turn::Cut {
            turn: Box::new(Turn::text("This answer will be cut off somewhere")),
            after: 2,
        },
        Turn::text("Complete answer"),
    ]);
    let c = client(&llm, fast());
    let (events, done) = collect(&c, &request()).await;
    assert_eq!(done.unwrap().content, "Complete answer");
    let retry_pos = events
        .iter()
        .position(|e| matches!(e, LlmEvent::Retrying { .. }))
        .unwrap();
    assert!(
        events[..retry_pos]
            .iter()
            .any(|e| matches!(e, LlmEvent::TextDelta(_))),
        "partial text came before the retry notice, so the caller can discard it"
    );
}

#[tokio::test]
async fn server_errors_give_up_after_the_attempts() {
    let llm = ScriptedLlm::start().await.unwrap();
    llm.push((0..3).map(|_| Turn::status(503, r#"{"error":{"message":"overloaded"}}"#)));
    let c = client(&llm, fast());
    let err = c.complete(&request()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Server);
    assert!(err.message.contains("overloaded"), "{}", err.message);
    assert_eq!(llm.requests().len(), 3, "max_attempts requests");
}

#[tokio::test]
async fn auth_and_context_errors_are_not_retried() {
    let llm = ScriptedLlm::start().await.unwrap();
    llm.push([Turn::status(
        401,
        r#"{"error":{"message":"invalid api key"}}"#,
    )]);
    let c = client(&llm, fast());
    let err = c.complete(&request()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Auth);
    assert!(err.message.contains("API key"));
    assert_eq!(llm.requests().len(), 1);

    llm.push([Turn::status(
        400,
        r#"{"error":{"message":"This model's maximum context length is 8192 tokens."}}"#,
    )]);
    let err = c.complete(&request()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::ContextTooLong);
    assert_eq!(llm.requests().len(), 2);
}

#[tokio::test]
async fn idle_stream_times_out_and_connection_refused_is_a_network_error() {
    let llm = ScriptedLlm::start().await.unwrap();
    llm.push([Turn::Stall, Turn::Stall, Turn::Stall]);
    let c = client(&llm, fast());
    let t0 = Instant::now();
    let err = c.complete(&request()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Network);
    assert!(err.detail.contains("no data"), "{}", err.detail);
    assert!(t0.elapsed() < Duration::from_secs(5));

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = LlmClient::new(
        Endpoint {
            provider: "custom".into(),
            base_url: format!("http://127.0.0.1:{port}/v1"),
            api_key: None,
            model: "m".into(),
        },
        ClientOptions {
            max_attempts: 2,
            ..fast()
        },
    )
    .unwrap();
    let err = c.complete(&request()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Network);
    assert!(err.message.contains("Could not reach"), "{}", err.message);
}

#[tokio::test]
async fn garbage_in_the_stream_is_a_protocol_error() {
    let llm = ScriptedLlm::start().await.unwrap();
    llm.push_aux([Turn::Raw(vec!["{not json".into()])]);
    let c = client(&llm, fast());
    // Without tools (with tools, a broken stream is asked again without streaming: see
    // `a_server_that_cannot_stream_tool_calls_is_asked_without_streaming`).
    let req = ChatRequest {
        tools: Vec::new(),
        ..request()
    };
    let err = c.complete(&req).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Protocol);
}

#[tokio::test]
async fn dropping_the_stream_cancels_the_request() {
    let llm = ScriptedLlm::start().await.unwrap();
    let gate = Arc::new(tokio::sync::Notify::new());
    llm.push([Turn::Gated {
        turn: Box::new(Turn::text("a long answer that is never finished")),
        at: 3,
        gate: gate.clone(),
    }]);
    let c = client(
        &llm,
        ClientOptions {
            idle_timeout: Duration::from_secs(30),
            ..fast()
        },
    );
    let mut s = c.stream(&request());
    let first = s.next().await.unwrap().unwrap();
    assert!(matches!(first, LlmEvent::TextDelta(_)));
    let t0 = Instant::now();
    drop(s);
    assert!(
        t0.elapsed() < Duration::from_millis(100),
        "cancellation is immediate"
    );
    gate.notify_waiters();
}

fn sse(v: serde_json::Value) -> String {
    v.to_string()
}

#[tokio::test]
async fn no_credit_is_told_in_the_providers_words_and_not_retried() {
    let llm = ScriptedLlm::start().await.unwrap();
    llm.push([Turn::status(
        402,
        r#"{"error":{"message":"Insufficient credits. Add more using https://openrouter.ai/settings/credits","code":402}}"#,
    )]);
    let c = client(&llm, fast());
    let err = c.complete(&request()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::NoCredit);
    assert!(
        err.message.contains("no credit") && err.message.contains("\u{201c}Insufficient credits"),
        "names the cause and quotes the provider: {}",
        err.message
    );
    assert_eq!(
        llm.requests().len(),
        1,
        "a 402 can never succeed: asked once"
    );
}

#[tokio::test]
async fn error_objects_inside_a_200_stream_are_classified_quoted_and_retried_only_when_it_can_help()
{
    let llm = ScriptedLlm::start().await.unwrap();
    let c = client(&llm, fast());
    // OpenRouter's shape: an error object with no choices, then a mid-stream rate limit after
    // some text (the choice ends with finish_reason "error"); both are retried.
    llm.push([
        Turn::Raw(vec![sse(
            json!({"error": {"code": 429, "message": "Rate limit exceeded: free-models-per-min."}}),
        )]),
        Turn::Raw(vec![
            sse(json!({"choices": [{"index": 0, "delta": {"content": "Half an ans"}}]})),
            sse(
                json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "error"}],
                        "error": {"code": 429, "message": "Provider rate limited upstream"}}),
            ),
        ]),
        Turn::text("Whole answer"),
    ]);
    let (events, done) = collect(&c, &request()).await;
    assert_eq!(done.unwrap().content, "Whole answer");
    let reasons: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            LlmEvent::Retrying { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons[0].contains("rate-limiting") && reasons[0].contains("free-models-per-min"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].contains("Provider rate limited upstream"),
        "{reasons:?}"
    );
    assert_eq!(llm.requests().len(), 3);

    // A context error inside a 200 answer (an error object inside the choice): not retried.
    llm.push([Turn::Raw(vec![sse(json!({"choices": [{"index": 0, "delta": {},
        "finish_reason": "error",
        "error": {"code": "context_length_exceeded", "message": "This model's maximum context length is 8192 tokens."}}]}))])]);
    let err = c.complete(&request()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::ContextTooLong, "{err:?}");
    assert!(
        err.message.contains("context window")
            && err.message.contains("maximum context length is 8192"),
        "{}",
        err.message
    );
    assert_eq!(llm.requests().len(), 4, "asked once");

    // A 400 for a too-long context, as OpenAI words it.
    llm.push([Turn::status(
        400,
        r#"{"error":{"message":"Please reduce the length of the messages.","type":"invalid_request_error","code":"context_length_exceeded"}}"#,
    )]);
    let err = c.complete(&request()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::ContextTooLong);
    assert!(err.message.contains("reduce the length"), "{}", err.message);
}

#[tokio::test]
async fn parallel_tool_calls_under_one_index_are_told_apart_by_id() {
    // Ollama sends each parallel call whole in its own chunk, all at index 0.
    let llm = ScriptedLlm::start().await.unwrap();
    llm.push([Turn::Raw(vec![
        sse(json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_a",
            "type": "function", "function": {"name": "terminal", "arguments": "{\"command\":\"ls\"}"}}]}}]})),
        sse(json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_b",
            "type": "function", "function": {"name": "readFiles", "arguments": "{\"paths\":[\"a\"]}"}}]}}]})),
        sse(json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})),
    ])]);
    let c = client(&llm, fast());
    let done = c.complete(&request()).await.unwrap();
    let calls: Vec<(&str, &str, &str)> = done
        .tool_calls
        .iter()
        .map(|t| {
            (
                t.id.as_str(),
                t.function.name.as_str(),
                t.function.arguments.as_str(),
            )
        })
        .collect();
    assert_eq!(
        calls,
        vec![
            ("call_a", "terminal", "{\"command\":\"ls\"}"),
            ("call_b", "readFiles", "{\"paths\":[\"a\"]}")
        ]
    );
}

#[tokio::test]
async fn a_server_that_cannot_stream_tool_calls_is_asked_without_streaming() {
    let llm = ScriptedLlm::start().await.unwrap();
    llm.push([Turn::StreamFails(Box::new(Turn::tool(
        "terminal",
        json!({"command": "ls"}),
    )))]);
    let c = client(&llm, fast());
    let (events, done) = collect(&c, &request()).await;
    let done = done.unwrap();
    assert_eq!(done.tool_calls.len(), 1);
    assert_eq!(done.tool_calls[0].function.name, "terminal");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, LlmEvent::Notice(n) if n.contains("cannot stream answers with tool calls"))),
        "the person is told: {events:?}"
    );
    let streams: Vec<bool> = llm
        .requests()
        .iter()
        .map(|r| r.body["stream"].as_bool().unwrap_or(false))
        .collect();
    assert_eq!(streams, vec![true, false]);

    // Remembered for the model: the next request with tools goes without streaming at once.
    llm.push([Turn::StreamFails(Box::new(Turn::text("plain")))]);
    let done = c.complete(&request()).await.unwrap();
    assert_eq!(done.content, "plain");
    assert_eq!(llm.requests().len(), 3);
    assert_eq!(llm.requests()[2].body["stream"], false);
    // Without tools, streaming still works for it.
    llm.push_aux([Turn::text("streamed")]);
    let req = ChatRequest {
        tools: Vec::new(),
        ..request()
    };
    assert_eq!(c.complete(&req).await.unwrap().content, "streamed");
    assert_eq!(llm.requests()[3].body["stream"], true);
}

#[tokio::test]
async fn reasoning_is_shown_apart_and_not_part_of_the_answer() {
    let llm = ScriptedLlm::start().await.unwrap();
    llm.push([Turn::Reasoning(
        "The user wants a greeting; keep it short.".into(),
        Box::new(Turn::text("Hello!")),
    )]);
    let c = client(&llm, fast());
    let (events, done) = collect(&c, &request()).await;
    let done = done.unwrap();
    assert_eq!(done.content, "Hello!");
    let thinking: String = events
        .iter()
        .filter_map(|e| match e {
            LlmEvent::ReasoningDelta(t) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(thinking, "The user wants a greeting; keep it short.");
    let sent_back = serde_json::to_string(&done.to_message()).unwrap();
    assert!(!sent_back.contains("greeting"), "{sent_back}");
}

#[tokio::test]
async fn models_are_listed_from_the_provider_and_cached() {
    let llm = ScriptedLlm::start().await.unwrap();
    llm.set_models(&["alpha", "beta"]);
    let c = client(&llm, fast());
    let ids: Vec<String> = c
        .list_models()
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(ids, vec!["alpha", "beta"]);
    llm.set_models(&["gamma"]);
    let again: Vec<String> = c
        .list_models()
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(again, ids, "cached within the TTL");
    assert_eq!(llm.models_requests(), 1);
}
