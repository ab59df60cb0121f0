//! The client: one request -> a stream of events ending in the whole answer; retries, the
//! fallback to non-streamed answers for servers that cannot stream tool calls, the model list.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use codeflux_protocol::ModelInfo;
use futures_util::StreamExt;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::stream::read_stream;
use crate::whole::parse_whole;
use crate::{ChatRequest, Completion, Endpoint, ErrorKind, LlmError, Usage};

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
    /// How long the provider's model list is kept.
    pub models_ttl: Duration,
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
            models_ttl: Duration::from_secs(600),
        }
    }
}

/// What a streaming request reports, in order; `Done` comes last.
#[derive(Clone, Debug, PartialEq)]
pub enum LlmEvent {
    /// Visible text, as it arrives.
    TextDelta(String),
    /// Reasoning text (shown as "Thinking"; never part of the answer sent back).
    ReasoningDelta(String),
    /// The model started a tool call (its arguments follow in later chunks).
    ToolCallStarted { index: usize, name: String },
    /// The attempt failed and will be repeated; text streamed so far in this request is void.
    Retrying {
        attempt: usize,
        max_attempts: usize,
        reason: String,
        wait: Duration,
    },
    /// Worth telling the person (the client changed how it talks to this model).
    Notice(String),
    /// The whole answer.
    Done(Completion),
}

/// What the client learned, shared by its clones (every model of one endpoint).
#[derive(Default)]
struct Shared {
    /// Models whose server failed on streamed tool calls: asked without streaming.
    no_stream_tools: Mutex<HashSet<String>>,
    models: Mutex<Option<(Instant, Vec<ModelInfo>)>>,
    /// Model -> (USD per million prompt tokens, per million completion tokens).
    prices: HashMap<String, (f64, f64)>,
}

/// A client for one endpoint.
#[derive(Clone)]
pub struct LlmClient {
    http: reqwest::Client,
    endpoint: Endpoint,
    opts: ClientOptions,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for LlmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmClient")
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

/// What an attempt saw before it failed (decides the fallback to a non-streamed answer).
#[derive(Default)]
pub(crate) struct Seen {
    /// The server answered 200 with an event stream.
    pub stream_began: bool,
    pub text: bool,
    pub tool_call: bool,
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
            shared: Arc::new(Shared::default()),
        })
    }

    /// A price table (model -> USD per million prompt and completion tokens) for providers
    /// that report no cost.
    pub fn with_prices(mut self, prices: HashMap<String, (f64, f64)>) -> Self {
        self.shared = Arc::new(Shared {
            prices,
            ..Shared::default()
        });
        self
    }

    /// The same endpoint with another model (sharing what the client learned).
    pub fn with_model(&self, model: &str) -> LlmClient {
        let mut c = self.clone();
        c.endpoint.model = model.to_owned();
        c
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The cost of `usage` by the configured price table, if the model is in it.
    pub fn price(&self, usage: &Usage) -> Option<f64> {
        let (p, c) = self.shared.prices.get(&self.endpoint.model)?;
        Some((usage.prompt_tokens as f64 * p + usage.completion_tokens as f64 * c) / 1_000_000.0)
    }

    fn is_openrouter(&self) -> bool {
        self.endpoint.provider == "openrouter" || self.endpoint.base_url.contains("openrouter.ai")
    }

    /// Starts a streaming request. Dropping the returned stream cancels it.
    pub fn stream(&self, req: &ChatRequest) -> ChatStream {
        let (tx, rx) = mpsc::channel(64);
        let this = self.clone();
        let req = req.clone();
        let task = tokio::spawn(async move { this.run(req, tx).await });
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

    /// The provider's models (its `/models`), kept for `models_ttl`.
    pub async fn list_models(&self) -> Result<Vec<ModelInfo>, LlmError> {
        if let Ok(cache) = self.shared.models.lock()
            && let Some((at, list)) = cache.as_ref()
            && at.elapsed() < self.opts.models_ttl
        {
            return Ok(list.clone());
        }
        let mut req = self
            .http
            .get(format!("{}/models", self.endpoint.base_url))
            .timeout(Duration::from_secs(30));
        if let Some(key) = &self.endpoint.api_key {
            req = req.header(AUTHORIZATION, format!("Bearer {key}"));
        }
        let res = req
            .send()
            .await
            .map_err(|e| LlmError::network(describe(&e)))?;
        let status = res.status();
        let text = read_limited(res, 16 * 1024 * 1024, self.opts.idle_timeout).await;
        if !status.is_success() {
            return Err(LlmError::from_status(status.as_u16(), &text, None));
        }
        let list = crate::models::parse_models(&text)?;
        if let Ok(mut cache) = self.shared.models.lock() {
            *cache = Some((Instant::now(), list.clone()));
        }
        Ok(list)
    }

    fn streams_tools(&self) -> bool {
        self.shared
            .no_stream_tools
            .lock()
            .map(|s| !s.contains(&self.endpoint.model))
            .unwrap_or(true)
    }

    async fn run(self, req: ChatRequest, tx: mpsc::Sender<Result<LlmEvent, LlmError>>) {
        let has_tools = !req.tools.is_empty();
        let mut streaming = !has_tools || self.streams_tools();
        let mut fell_back = false;
        let mut backoff = ExponentialBuilder::default()
            .with_min_delay(self.opts.backoff_min)
            .with_max_delay(self.opts.backoff_max)
            .with_jitter()
            .with_max_times(self.opts.max_attempts.saturating_sub(1))
            .build();
        let mut attempt = 1;
        loop {
            let body = self.request_body(&req, streaming);
            let mut seen = Seen::default();
            let err = match self.attempt(&body, streaming, &tx, &mut seen).await {
                Ok(Some(done)) => {
                    if fell_back && !streaming {
                        self.remember_no_stream(&tx).await;
                    }
                    if tx.send(Ok(LlmEvent::Done(done))).await.is_err() {
                        tracing::debug!("the caller left before the answer was complete");
                    }
                    return;
                }
                Ok(None) => return, // nobody listens any more
                Err(e) => e,
            };
            tracing::warn!(kind = err.kind.as_str(), attempt, streaming, detail = %err.detail, "model request failed");
            // A server that fails on streamed tool calls (some local servers drop the stream):
            // once, ask again at once without streaming.
            let stream_failed = seen.stream_began
                && (seen.tool_call || !seen.text)
                && matches!(
                    err.kind,
                    ErrorKind::Network | ErrorKind::Protocol | ErrorKind::Server
                );
            let says_stream = err.detail.to_lowercase().contains("stream")
                && matches!(err.kind, ErrorKind::BadRequest | ErrorKind::Server);
            if streaming
                && has_tools
                && !fell_back
                && (stream_failed || says_stream)
                && attempt < self.opts.max_attempts
            {
                fell_back = true;
                streaming = false;
                attempt += 1;
                let notice = LlmEvent::Retrying {
                    attempt,
                    max_attempts: self.opts.max_attempts,
                    reason: format!(
                        "{} Asking again without streaming (some servers cannot stream tool calls).",
                        err.message
                    ),
                    wait: Duration::ZERO,
                };
                if tx.send(Ok(notice)).await.is_err() {
                    return;
                }
                continue;
            }
            // The answer without streaming failed too: streaming was not the cause.
            streaming = true;
            let delay = match (err.kind.retryable(), backoff.next()) {
                (true, Some(d)) if attempt < self.opts.max_attempts => d,
                _ => {
                    let mut err = err;
                    if attempt > 1 {
                        err.message = format!("{} (CodeFlux tried {attempt} times.)", err.message);
                    }
                    if tx.send(Err(err)).await.is_err() {
                        tracing::debug!("the caller left before the error was told");
                    }
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
                if tx.send(Err(err)).await.is_err() {
                    tracing::debug!("the caller left before the error was told");
                }
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

    async fn remember_no_stream(&self, tx: &mpsc::Sender<Result<LlmEvent, LlmError>>) {
        let fresh = self
            .shared
            .no_stream_tools
            .lock()
            .map(|mut s| s.insert(self.endpoint.model.clone()))
            .unwrap_or(false);
        if fresh {
            tracing::info!(model = %self.endpoint.model, "the server cannot stream tool calls: asking without streaming from now on");
            let notice = LlmEvent::Notice(format!(
                "The server of {} cannot stream answers with tool calls; its answers now come whole.",
                self.endpoint.model
            ));
            if tx.send(Ok(notice)).await.is_err() {
                tracing::debug!("the caller left");
            }
        }
    }

    /// One HTTP request. Ok(None): the receiver went away.
    async fn attempt(
        &self,
        body: &serde_json::Value,
        streaming: bool,
        tx: &mpsc::Sender<Result<LlmEvent, LlmError>>,
        seen: &mut Seen,
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
            let text = read_limited(res, 64 * 1024, self.opts.idle_timeout).await;
            return Err(LlmError::from_status(status.as_u16(), &text, retry_after));
        }
        let is_sse = res
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.contains("text/event-stream"));
        if !is_sse {
            // A whole JSON answer: asked for, or the server ignored `stream: true`.
            let text = read_limited(res, 16 * 1024 * 1024, self.opts.idle_timeout).await;
            if streaming && text.trim().is_empty() {
                seen.stream_began = true;
                return Err(LlmError::cut("the answer was empty"));
            }
            let (done, reasoning) = parse_whole(&text)?;
            let mut events = Vec::new();
            if !reasoning.is_empty() {
                events.push(LlmEvent::ReasoningDelta(reasoning));
            }
            if !done.content.is_empty() {
                events.push(LlmEvent::TextDelta(done.content.clone()));
            }
            for ev in events {
                if tx.send(Ok(ev)).await.is_err() {
                    return Ok(None);
                }
            }
            return Ok(Some(done));
        }
        seen.stream_began = true;
        read_stream(res, self.opts.idle_timeout, tx, seen).await
    }

    fn request_body(&self, req: &ChatRequest, streaming: bool) -> serde_json::Value {
        let mut body = serde_json::json!({
            "model": self.endpoint.model,
            "messages": req.messages,
            "stream": streaming,
        });
        if streaming {
            body["stream_options"] = serde_json::json!({ "include_usage": true });
        }
        if self.is_openrouter() {
            // Usage accounting: OpenRouter then reports the cost of each answer.
            body["usage"] = serde_json::json!({ "include": true });
        }
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

/// The body, at most `limit` bytes; stops when no byte came for `idle`.
async fn read_limited(res: reqwest::Response, limit: usize, idle: Duration) -> String {
    let mut out = Vec::new();
    let mut body = res.bytes_stream();
    while let Ok(Some(Ok(chunk))) = tokio::time::timeout(idle, body.next()).await {
        let room = limit.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= limit {
            break;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) fn describe(e: &reqwest::Error) -> String {
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

pub(crate) fn cut(s: &str, n: usize) -> &str {
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
}
