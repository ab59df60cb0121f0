//! The streaming client: one request -> a stream of events ending in the whole answer.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::wire::{Chunk, FunctionCall, ToolCall};
use crate::{ChatRequest, Completion, Endpoint, LlmError, Usage};

/// Timeouts and retry policy.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    pub connect_timeout: Duration,
    /// Longest silence accepted while waiting for the next bytes of an answer.
    pub idle_timeout: Duration,
    /// Attempts per request, the first included.
    pub max_attempts: usize,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// A Retry-After longer than this fails the request instead of waiting.
    pub max_retry_after: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(120),
            max_attempts: 4,
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(90),
        }
    }
}

/// What a streaming request reports, in order; `Done` comes last.
#[derive(Clone, Debug, PartialEq)]
pub enum LlmEvent {
    /// Visible text, as it arrives.
    TextDelta(String),
    /// The model started a tool call (its arguments follow in later chunks).
    ToolCallStarted { index: usize, name: String },
    /// The attempt failed and will be repeated; text streamed so far in this request is void.
    Retrying {
        attempt: usize,
        max_attempts: usize,
        reason: String,
        wait: Duration,
    },
    /// The whole answer.
    Done(Completion),
}

/// A client for one endpoint.
#[derive(Clone)]
pub struct LlmClient {
    http: reqwest::Client,
    endpoint: Endpoint,
    opts: ClientOptions,
}

impl std::fmt::Debug for LlmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmClient")
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

impl LlmClient {
    pub fn new(endpoint: Endpoint, opts: ClientOptions) -> Result<Self, LlmError> {
        // reqwest is built without a default TLS provider; ring is already in our graph (sqlx).
        // Installing it is idempotent: a second call only reports that one is installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(opts.connect_timeout)
            // Some proxies and test servers match header names case-sensitively.
            .http1_title_case_headers()
            .user_agent(concat!("codeflux/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| LlmError::network(format!("building the HTTP client: {e}")))?;
        Ok(Self {
            http,
            endpoint,
            opts,
        })
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Starts a streaming request. Dropping the returned stream cancels it.
    pub fn stream(&self, req: &ChatRequest) -> ChatStream {
        let (tx, rx) = mpsc::channel(64);
        let body = request_body(&self.endpoint.model, req);
        let this = self.clone();
        let task = tokio::spawn(async move { this.run(body, tx).await });
        ChatStream { rx, task }
    }

    /// A whole answer, without the intermediate events.
    pub async fn complete(&self, req: &ChatRequest) -> Result<Completion, LlmError> {
        let mut stream = self.stream(req);
        while let Some(ev) = stream.next().await {
            if let LlmEvent::Done(c) = ev? {
                return Ok(c);
            }
        }
        Err(LlmError::protocol("the answer ended without a result"))
    }

    async fn run(self, body: serde_json::Value, tx: mpsc::Sender<Result<LlmEvent, LlmError>>) {
        let mut backoff = ExponentialBuilder::default()
            .with_min_delay(self.opts.backoff_min)
            .with_max_delay(self.opts.backoff_max)
            .with_jitter()
            .with_max_times(self.opts.max_attempts.saturating_sub(1))
            .build();
        let mut attempt = 1;
        loop {
            let err = match self.attempt(&body, &tx).await {
                Ok(Some(done)) => {
                    let _ = tx.send(Ok(LlmEvent::Done(done))).await;
                    return;
                }
                Ok(None) => return, // nobody listens any more
                Err(e) => e,
            };
            tracing::warn!(kind = err.kind.as_str(), attempt, detail = %err.detail, "model request failed");
            let delay = match (err.kind.retryable(), backoff.next()) {
                (true, Some(d)) => d,
                _ => {
                    let _ = tx.send(Err(err)).await;
                    return;
                }
            };
            let wait = err.retry_after.map_or(delay, |ra| ra.max(delay));
            if wait > self.opts.max_retry_after {
                let mut err = err;
                err.message = format!(
                    "{} The provider asked to wait {} s before trying again.",
                    err.message,
                    wait.as_secs()
                );
                let _ = tx.send(Err(err)).await;
                return;
            }
            let notice = LlmEvent::Retrying {
                attempt: attempt + 1,
                max_attempts: self.opts.max_attempts,
                reason: err.message.clone(),
                wait,
            };
            if tx.send(Ok(notice)).await.is_err() {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = tx.closed() => return,
            }
            attempt += 1;
        }
    }

    /// One HTTP request. Ok(None): the receiver went away.
    async fn attempt(
        &self,
        body: &serde_json::Value,
        tx: &mpsc::Sender<Result<LlmEvent, LlmError>>,
    ) -> Result<Option<Completion>, LlmError> {
        let url = format!("{}/chat/completions", self.endpoint.base_url);
        let mut req = self
            .http
            .post(&url)
            .json(body)
            .header("X-Title", "CodeFlux")
            .header("HTTP-Referer", "https://github.com/codeflux/codeflux");
        if let Some(key) = &self.endpoint.api_key {
            req = req.header(AUTHORIZATION, format!("Bearer {key}"));
        }
        let res = tokio::select! {
            r = req.send() => r.map_err(|e| LlmError::network(describe(&e)))?,
            () = tx.closed() => return Ok(None),
        };
        let status = res.status();
        if !status.is_success() {
            let retry_after = res
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            let text = read_limited(res, 64 * 1024).await;
            return Err(LlmError::from_status(status.as_u16(), &text, retry_after));
        }
        let is_sse = res
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.contains("text/event-stream"));
        if !is_sse {
            // A server that ignored `stream: true` answers one JSON document.
            let text = read_limited(res, 16 * 1024 * 1024).await;
            return parse_whole(&text).map(Some);
        }
        self.read_stream(res, tx).await
    }

    async fn read_stream(
        &self,
        res: reqwest::Response,
        tx: &mpsc::Sender<Result<LlmEvent, LlmError>>,
    ) -> Result<Option<Completion>, LlmError> {
        let idle = self.opts.idle_timeout;
        let bytes = res.bytes_stream();
        let events = tokio_stream::StreamExt::timeout(bytes, idle)
            .map(|item| match item {
                Ok(Ok(b)) => Ok(b),
                Ok(Err(e)) => Err(StreamError(describe(&e))),
                Err(_) => Err(StreamError(format!("no data for {} s", idle.as_secs()))),
            })
            .eventsource();
        let mut events = std::pin::pin!(events);
        let mut acc = Accumulator::default();
        let mut done = false;
        while let Some(item) = tokio::select! {
            i = events.next() => i,
            () = tx.closed() => return Ok(None),
        } {
            let ev = item.map_err(|e| match e {
                eventsource_stream::EventStreamError::Transport(StreamError(s)) => {
                    LlmError::network(format!("the answer stopped mid-way: {s}"))
                }
                other => LlmError::protocol(other.to_string()),
            })?;
            let data = ev.data.trim();
            if data.is_empty() {
                continue;
            }
            if data == "[DONE]" {
                done = true;
                break;
            }
            let chunk: Chunk = serde_json::from_str(data)
                .map_err(|e| LlmError::protocol(format!("bad chunk ({e}): {}", cut(data, 300))))?;
            if let Some(err) = chunk.error {
                let text = err.to_string();
                let code = err
                    .get("code")
                    .and_then(serde_json::Value::as_u64)
                    .and_then(|c| u16::try_from(c).ok())
                    .unwrap_or(502);
                return Err(LlmError::from_status(
                    code,
                    &serde_json::json!({"error": err}).to_string(),
                    None,
                )
                .with_detail(format!("error inside the stream: {text}")));
            }
            for event in acc.apply(chunk)? {
                if tx.send(Ok(event)).await.is_err() {
                    return Ok(None);
                }
            }
        }
        if !done && acc.finish_reason.is_none() {
            return Err(LlmError::network(
                "the answer stopped mid-way: the stream closed before it was complete",
            ));
        }
        acc.finish().map(Some)
    }
}

impl LlmError {
    fn with_detail(mut self, detail: String) -> Self {
        self.detail = detail;
        self
    }
}

#[derive(Debug)]
struct StreamError(String);

impl std::fmt::Display for StreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The events of one request. Dropping it cancels the request.
pub struct ChatStream {
    rx: mpsc::Receiver<Result<LlmEvent, LlmError>>,
    task: JoinHandle<()>,
}

impl ChatStream {
    pub async fn next(&mut self) -> Option<Result<LlmEvent, LlmError>> {
        self.rx.recv().await
    }
}

impl Drop for ChatStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn request_body(model: &str, req: &ChatRequest) -> serde_json::Value {
    let mut body = serde_json::json!({
        "model": model,
        "messages": req.messages,
        "stream": true,
        "stream_options": { "include_usage": true },
    });
    if !req.tools.is_empty() {
        body["tools"] = serde_json::json!(req.tools);
        body["tool_choice"] = serde_json::json!("auto");
    }
    if let Some(t) = req.temperature {
        body["temperature"] = serde_json::json!(t);
    }
    if let Some(m) = req.max_tokens {
        body["max_tokens"] = serde_json::json!(m);
    }
    body
}

/// Builds the answer from chunks: text, tool calls by index, finish reason, usage.
#[derive(Default)]
struct Accumulator {
    content: String,
    calls: Vec<PartialCall>,
    finish_reason: Option<String>,
    usage: Option<Usage>,
}

#[derive(Default)]
struct PartialCall {
    id: String,
    name: String,
    arguments: String,
}

impl Accumulator {
    fn apply(&mut self, chunk: Chunk) -> Result<Vec<LlmEvent>, LlmError> {
        let mut out = Vec::new();
        if let Some(u) = chunk.usage {
            self.usage = Some(u);
        }
        for choice in chunk.choices {
            if let Some(reason) = choice.finish_reason {
                self.finish_reason = Some(reason);
            }
            let Some(delta) = choice.delta else { continue };
            if let Some(text) = delta.content
                && !text.is_empty()
            {
                self.content.push_str(&text);
                out.push(LlmEvent::TextDelta(text));
            }
            for (pos, tc) in delta.tool_calls.unwrap_or_default().into_iter().enumerate() {
                let index = tc.index.unwrap_or(pos);
                if index > 64 {
                    return Err(LlmError::protocol(format!("tool call index {index}")));
                }
                while self.calls.len() <= index {
                    self.calls.push(PartialCall::default());
                }
                let call = &mut self.calls[index];
                if let Some(id) = tc.id
                    && call.id.is_empty()
                {
                    call.id = id;
                }
                if let Some(f) = tc.function {
                    if let Some(name) = f.name
                        && !name.is_empty()
                    {
                        let started = call.name.is_empty();
                        call.name.push_str(&name);
                        if started {
                            out.push(LlmEvent::ToolCallStarted {
                                index,
                                name: call.name.clone(),
                            });
                        }
                    }
                    if let Some(args) = f.arguments {
                        call.arguments.push_str(&args);
                    }
                }
            }
        }
        Ok(out)
    }

    fn finish(self) -> Result<Completion, LlmError> {
        let mut tool_calls = Vec::new();
        for (i, c) in self.calls.into_iter().enumerate() {
            if c.name.is_empty() && c.arguments.is_empty() {
                continue;
            }
            if c.name.is_empty() {
                return Err(LlmError::protocol(format!("tool call #{i} has no name")));
            }
            tool_calls.push(ToolCall {
                id: if c.id.is_empty() {
                    format!("call_{i}")
                } else {
                    c.id
                },
                kind: "function".to_owned(),
                function: FunctionCall {
                    name: c.name,
                    arguments: c.arguments,
                },
            });
        }
        Ok(Completion {
            content: self.content,
            tool_calls,
            finish_reason: self.finish_reason,
            usage: self.usage,
        })
    }
}

/// A non-streamed answer (`chat.completion` object).
fn parse_whole(text: &str) -> Result<Completion, LlmError> {
    let v: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| LlmError::protocol(format!("bad JSON answer ({e}): {}", cut(text, 300))))?;
    let msg = v
        .pointer("/choices/0/message")
        .ok_or_else(|| LlmError::protocol(format!("no choices in: {}", cut(text, 300))))?;
    let content = msg
        .get("content")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let tool_calls: Vec<ToolCall> = match msg.get("tool_calls") {
        Some(tc) if !tc.is_null() => serde_json::from_value(tc.clone())
            .map_err(|e| LlmError::protocol(format!("bad tool_calls: {e}")))?,
        _ => Vec::new(),
    };
    Ok(Completion {
        content,
        tool_calls,
        finish_reason: v
            .pointer("/choices/0/finish_reason")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned),
        usage: v
            .get("usage")
            .and_then(|u| serde_json::from_value(u.clone()).ok()),
    })
}

fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0)
            .then(|| Duration::from_secs_f64(secs.min(86_400.0)));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

async fn read_limited(res: reqwest::Response, limit: usize) -> String {
    let mut out = Vec::new();
    let mut body = res.bytes_stream();
    while let Some(Ok(chunk)) = body.next().await {
        let room = limit.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= limit {
            break;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn describe(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    if e.is_timeout() {
        s.push_str(" (timed out)");
    }
    s
}

fn cut(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        None => s,
        Some((i, _)) => &s[..i],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn chunks_assemble_split_tool_calls() {
        let mut acc = Accumulator::default();
        let chunks = [
            r#"{"choices":[{"delta":{"role":"assistant","content":"Hi "}}]}"#,
            r#"{"choices":[{"delta":{"content":"there"}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"a","function":{"name":"readFiles","arguments":""}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"files\":"}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":1,"id":"b","function":{"name":"terminal","arguments":"{\"command\":\"ls\"}"}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"[\"x\"]}"}}]}}]}"#,
            r#"{"choices":[{"delta":{},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}"#,
        ];
        let mut events = Vec::new();
        for c in chunks {
            events.extend(acc.apply(serde_json::from_str(c).unwrap()).unwrap());
        }
        assert_eq!(events[0], LlmEvent::TextDelta("Hi ".into()));
        assert!(events.contains(&LlmEvent::ToolCallStarted {
            index: 1,
            name: "terminal".into()
        }));
        let done = acc.finish().unwrap();
        assert_eq!(done.content, "Hi there");
        assert_eq!(done.tool_calls.len(), 2);
        assert_eq!(done.tool_calls[0].function.arguments, r#"{"files":["x"]}"#);
        assert_eq!(done.tool_calls[1].id, "b");
        assert_eq!(done.usage.unwrap().total_tokens, 7);
        assert_eq!(done.finish_reason.as_deref(), Some("tool_calls"));
    }
}
