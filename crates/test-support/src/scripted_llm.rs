//! A scripted OpenAI-compatible Chat Completions server on loopback, for tests only.
//!
//! It speaks the real wire protocol over real HTTP (streamed `text/event-stream` chunks, tool-call
//! arguments split into small fragments, `[DONE]`), serves queued turns in order and records every
//! request so tests can assert what the product sent. Requests that offer `tools` take the next
//! agent turn; requests without tools (title, reply) take the next auxiliary turn, or a default.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};

use crate::loopback::{Body, body_bytes, json_response, serve};
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};

/// One scripted answer.
#[derive(Clone)]
pub enum Turn {
    /// Text, streamed in pieces of 9 characters.
    Text(String),
    /// Tool calls (name, JSON arguments as text), arguments streamed in pieces of 7 characters.
    ToolCalls(Vec<(String, String)>),
    /// Text and tool calls in one answer.
    TextAndTools(String, Vec<(String, String)>),
    /// These `data:` payloads verbatim, then `[DONE]` (for malformed answers).
    Raw(Vec<String>),
    /// An HTTP error answer.
    Status {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// The first `after` chunks of the turn, then the stream ends with neither a finish
    /// reason nor `[DONE]` (a connection cut mid-way).
    Cut { turn: Box<Turn>, after: usize },
    /// The turn, paused before chunk `at` until `gate` is notified.
    Gated {
        turn: Box<Turn>,
        at: usize,
        gate: Arc<Notify>,
    },
    /// Answers 200 and then sends nothing (for idle timeouts).
    Stall,
    /// Waits this long before answering the turn.
    Delayed(Duration, Box<Turn>),
    /// Asked with `stream: true`, the answer is a 200 event stream that closes at once with
    /// nothing in it (as servers that cannot stream tool calls do) and the turn stays queued;
    /// asked without streaming, the turn's whole answer.
    StreamFails(Box<Turn>),
    /// Reasoning text (`reasoning_content` deltas) before the turn.
    Reasoning(String, Box<Turn>),
}

impl Turn {
    pub fn text(t: impl Into<String>) -> Turn {
        Turn::Text(t.into())
    }

    /// One tool call with JSON arguments.
    pub fn tool(name: &str, args: Value) -> Turn {
        Turn::ToolCalls(vec![(name.to_owned(), args.to_string())])
    }

    pub fn tools(calls: Vec<(&str, Value)>) -> Turn {
        Turn::ToolCalls(
            calls
                .into_iter()
                .map(|(n, a)| (n.to_owned(), a.to_string()))
                .collect(),
        )
    }

    pub fn status(status: u16, body: &str) -> Turn {
        Turn::Status {
            status,
            headers: Vec::new(),
            body: body.to_owned(),
        }
    }
}

/// A request as the server received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Value,
}

impl Recorded {
    pub fn has_tools(&self) -> bool {
        self.body
            .get("tools")
            .and_then(Value::as_array)
            .is_some_and(|t| !t.is_empty())
    }

    /// An agent's turn: it offers tools, natively or described in the system prompt as
    /// `<tool_call>` blocks (the text protocol for models without native tool calls).
    pub fn is_agent_turn(&self) -> bool {
        self.has_tools()
            || self
                .messages()
                .first()
                .and_then(|m| m["content"].as_str())
                .is_some_and(|c| c.contains("<tool_call>"))
    }

    pub fn messages(&self) -> Vec<Value> {
        self.body
            .get("messages")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    }
}

#[derive(Default)]
struct State {
    agent: VecDeque<Turn>,
    aux: VecDeque<Turn>,
    requests: Vec<Recorded>,
    counter: usize,
    /// What GET /models lists (None: "scripted" and "scripted-alt").
    models: Option<Vec<String>>,
    /// GET /models requests answered.
    models_gets: usize,
    /// Per-conversation script (see [`ScriptedLlm::set_script`]).
    script: Vec<Turn>,
}

/// The running server; stops when dropped.
pub struct ScriptedLlm {
    /// `http://127.0.0.1:<port>/v1`, what LLM_BASE_URL should be.
    pub base_url: String,
    state: Arc<Mutex<State>>,
    arrived: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ScriptedLlm {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ScriptedLlm {
    pub async fn start() -> anyhow::Result<ScriptedLlm> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let arrived = Arc::new(Notify::new());
        let st = state.clone();
        let arr = arrived.clone();
        let task = serve(listener, move |req| handle(req, st.clone(), arr.clone()));
        Ok(ScriptedLlm {
            base_url: format!("http://{addr}/v1"),
            state,
            arrived,
            task,
        })
    }

    /// Queues agent turns (answers to requests that offer tools).
    pub fn push(&self, turns: impl IntoIterator<Item = Turn>) {
        if let Ok(mut s) = self.state.lock() {
            s.agent.extend(turns);
        }
    }

    /// From now on a request with tools gets `script[k]`, k = the number of assistant messages
    /// with tool calls already in its conversation (past the end: the last turn), so concurrent
    /// runs each replay the same script whatever the order of their requests; the queue is not
    /// used meanwhile. An empty script ends this mode.
    pub fn set_script(&self, turns: Vec<Turn>) {
        if let Ok(mut s) = self.state.lock() {
            s.script = turns;
        }
    }

    /// Queues answers to requests without tools (title, reply).
    pub fn push_aux(&self, turns: impl IntoIterator<Item = Turn>) {
        if let Ok(mut s) = self.state.lock() {
            s.aux.extend(turns);
        }
    }

    /// The models GET /models lists.
    pub fn set_models(&self, models: &[&str]) {
        if let Ok(mut s) = self.state.lock() {
            s.models = Some(models.iter().map(|m| (*m).to_owned()).collect());
        }
    }

    /// How many times GET /models was asked.
    pub fn models_requests(&self) -> usize {
        self.state.lock().map(|s| s.models_gets).unwrap_or(0)
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state
            .lock()
            .map(|s| s.requests.clone())
            .unwrap_or_default()
    }

    /// The agent's turns (requests that offered tools, natively or as text).
    pub fn agent_requests(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(Recorded::is_agent_turn)
            .collect()
    }

    /// Agent turns still queued.
    pub fn pending(&self) -> usize {
        self.state.lock().map(|s| s.agent.len()).unwrap_or_default()
    }

    /// Waits until `n` requests have arrived (at most `timeout`).
    pub async fn wait_requests(&self, n: usize, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.arrived.notified();
            if self.requests().len() >= n {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.requests().len() >= n;
            }
        }
    }
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<Mutex<State>>,
    arrived: Arc<Notify>,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    let headers: HashMap<String, String> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                v.to_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let bytes = body_bytes(req).await;
    if path.ends_with("/models") {
        let models = state
            .lock()
            .ok()
            .and_then(|mut s| {
                s.models_gets += 1;
                s.models.clone()
            })
            .unwrap_or_else(|| vec!["scripted".into(), "scripted-alt".into()]);
        let data: Vec<Value> = models
            .iter()
            .map(|m| json!({"id": m, "object": "model", "owned_by": "scripted"}))
            .collect();
        return Ok(json_response(200, &json!({"object": "list", "data": data})));
    }
    if !path.ends_with("/chat/completions") {
        return Ok(json_response(
            404,
            &json!({"error": {"message": "not found"}}),
        ));
    }
    let Ok(body) = serde_json::from_slice::<Value>(&bytes) else {
        return Ok(json_response(
            400,
            &json!({"error": {"message": "bad json"}}),
        ));
    };
    let recorded = Recorded {
        path,
        headers,
        body: body.clone(),
    };
    let tools = recorded.is_agent_turn();
    let streaming = body.get("stream").and_then(Value::as_bool) != Some(false);
    let (turn, base) = {
        let Ok(mut s) = state.lock() else {
            return Ok(json_response(
                500,
                &json!({"error": {"message": "poisoned"}}),
            ));
        };
        let acted = recorded
            .messages()
            .iter()
            .filter(|m| {
                m["role"] == "assistant"
                    && m["tool_calls"].as_array().is_some_and(|c| !c.is_empty())
            })
            .count();
        s.requests.push(recorded);
        let turn = if tools && !s.script.is_empty() {
            s.script.get(acted.min(s.script.len() - 1)).cloned()
        } else if tools {
            s.agent.pop_front()
        } else {
            s.aux.pop_front().or_else(|| Some(default_aux(&body)))
        };
        if streaming && let Some(Turn::StreamFails(inner)) = &turn {
            // Fails streamed, stays queued for the request without streaming.
            let again = Turn::StreamFails(inner.clone());
            if tools {
                s.agent.push_front(again);
            } else {
                s.aux.push_front(again);
            }
            s.counter += 1;
            drop(s);
            arrived.notify_waiters();
            return Ok(sse(Vec::new(), None, false));
        }
        s.counter += 1;
        (turn, s.counter * 100)
    };
    arrived.notify_waiters();
    let Some(turn) = turn else {
        return Ok(json_response(
            500,
            &json!({"error": {"message": "scripted server: no agent turn queued"}}),
        ));
    };
    if !streaming && let Some(whole) = whole_answer(&turn, base) {
        return Ok(whole);
    }
    Ok(respond(turn, base).await)
}

/// A non-streamed answer (`chat.completion`), for turns that have one.
fn whole_answer(turn: &Turn, base: usize) -> Option<Response<Body>> {
    let (text, calls, reasoning) = match turn {
        Turn::Text(t) => (t.clone(), Vec::new(), None),
        Turn::ToolCalls(c) => (String::new(), c.clone(), None),
        Turn::TextAndTools(t, c) => (t.clone(), c.clone(), None),
        Turn::StreamFails(inner) => return whole_answer(inner, base),
        Turn::Reasoning(r, inner) => match inner.as_ref() {
            Turn::Text(t) => (t.clone(), Vec::new(), Some(r.clone())),
            Turn::ToolCalls(c) => (String::new(), c.clone(), Some(r.clone())),
            _ => return None,
        },
        _ => return None,
    };
    let tool_calls: Vec<Value> = calls
        .iter()
        .enumerate()
        .map(|(i, (name, args))| {
            json!({"id": format!("call_{}", base + i), "type": "function",
                   "function": {"name": name, "arguments": args}})
        })
        .collect();
    let mut message = json!({"role": "assistant", "content": text});
    if !tool_calls.is_empty() {
        message["tool_calls"] = json!(tool_calls);
    }
    if let Some(r) = reasoning {
        message["reasoning_content"] = json!(r);
    }
    Some(json_response(
        200,
        &json!({
            "id": "chatcmpl-scripted", "object": "chat.completion", "model": "scripted",
            "choices": [{"index": 0, "message": message,
                         "finish_reason": if calls.is_empty() { "stop" } else { "tool_calls" }}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}
        }),
    ))
}

fn default_aux(body: &Value) -> Turn {
    let first = body
        .pointer("/messages/0/content")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_lowercase();
    if first.contains("title") {
        Turn::text("Counter App")
    } else {
        Turn::text("Your app is ready to try.")
    }
}

fn chunk(delta: Value, finish: Option<&str>) -> String {
    let mut c = json!({
        "id": "chatcmpl-scripted", "object": "chat.completion.chunk", "model": "scripted",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
    });
    if finish.is_some() {
        c["usage"] = json!({"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120});
    }
    c.to_string()
}

/// The `data:` payloads of a turn, `[DONE]` included.
fn payloads(turn: &Turn, base: usize) -> Vec<String> {
    let text_chunks = |t: &str| -> Vec<String> {
        let chars: Vec<char> = t.chars().collect();
        chars
            .chunks(9)
            .map(|c| chunk(json!({"content": c.iter().collect::<String>()}), None))
            .collect()
    };
    let tool_chunks = |calls: &[(String, String)]| -> Vec<String> {
        let mut out = Vec::new();
        for (i, (name, args)) in calls.iter().enumerate() {
            out.push(chunk(
                json!({"tool_calls": [{"index": i, "id": format!("call_{}", base + i), "type": "function",
                                        "function": {"name": name, "arguments": ""}}]}),
                None,
            ));
            let chars: Vec<char> = args.chars().collect();
            for piece in chars.chunks(7) {
                out.push(chunk(
                    json!({"tool_calls": [{"index": i, "function": {"arguments": piece.iter().collect::<String>()}}]}),
                    None,
                ));
            }
        }
        out
    };
    let mut out = vec![chunk(json!({"role": "assistant", "content": ""}), None)];
    match turn {
        Turn::Text(t) => {
            out.extend(text_chunks(t));
            out.push(chunk(json!({}), Some("stop")));
        }
        Turn::ToolCalls(calls) => {
            out.extend(tool_chunks(calls));
            out.push(chunk(json!({}), Some("tool_calls")));
        }
        Turn::TextAndTools(t, calls) => {
            out.extend(text_chunks(t));
            out.extend(tool_chunks(calls));
            out.push(chunk(json!({}), Some("tool_calls")));
        }
        Turn::Raw(raw) => out.extend(raw.iter().cloned()),
        Turn::Reasoning(r, inner) => {
            let chars: Vec<char> = r.chars().collect();
            for piece in chars.chunks(9) {
                out.push(chunk(
                    json!({"reasoning_content": piece.iter().collect::<String>()}),
                    None,
                ));
            }
            let mut rest = payloads(inner, base);
            rest.remove(0); // the role chunk is already there
            rest.pop(); // [DONE] comes below
            out.extend(rest);
        }
        _ => {}
    }
    out.push("[DONE]".to_owned());
    out
}

fn respond(
    turn: Turn,
    base: usize,
) -> std::pin::Pin<Box<dyn Future<Output = Response<Body>> + Send>> {
    Box::pin(async move {
        match turn {
            Turn::Status {
                status,
                headers,
                body,
            } => {
                let mut res = Response::new(Full::new(Bytes::from(body)).boxed());
                *res.status_mut() = hyper::StatusCode::from_u16(status)
                    .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
                for (k, v) in headers {
                    if let (Ok(k), Ok(v)) = (
                        hyper::header::HeaderName::from_bytes(k.as_bytes()),
                        hyper::header::HeaderValue::from_str(&v),
                    ) {
                        res.headers_mut().insert(k, v);
                    }
                }
                res
            }
            Turn::Delayed(d, inner) => {
                tokio::time::sleep(d).await;
                respond(*inner, base).await
            }
            Turn::Stall => sse(Vec::new(), None, true),
            Turn::Cut { turn, after } => {
                let mut p = payloads(&turn, base);
                p.truncate(after);
                sse(p, None, false)
            }
            Turn::Gated { turn, at, gate } => sse(payloads(&turn, base), Some((at, gate)), false),
            other => sse(payloads(&other, base), None, false),
        }
    })
}

/// An event-stream answer fed by a task, so chunks can pause (gate) or never come (stall).
fn sse(payloads: Vec<String>, gate: Option<(usize, Arc<Notify>)>, stall: bool) -> Response<Body> {
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(16);
    tokio::spawn(async move {
        if stall {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            drop(tx);
            return;
        }
        for (i, p) in payloads.into_iter().enumerate() {
            if let Some((at, gate)) = &gate
                && *at == i
            {
                gate.notified().await;
            }
            let frame = Frame::data(Bytes::from(format!("data: {p}\n\n")));
            if tx.send(Ok(frame)).await.is_err() {
                return;
            }
            tokio::task::yield_now().await;
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    let mut res = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    res.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("text/event-stream"),
    );
    res.headers_mut().insert(
        "cache-control",
        hyper::header::HeaderValue::from_static("no-cache"),
    );
    res
}
