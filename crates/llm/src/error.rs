//! Errors classified into what a person can act on.

use std::time::Duration;

/// The class of a failure; decides whether it is retried and what the person is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// No provider, or an incomplete one.
    NotConfigured,
    /// The key was refused (401/403).
    Auth,
    /// Too many requests (429).
    RateLimit,
    /// The account has no credit left (402): trying again cannot help.
    NoCredit,
    /// The conversation no longer fits the model's context window.
    ContextTooLong,
    /// The provider refused the request as malformed (other 4xx), e.g. an unknown model.
    BadRequest,
    /// The provider failed (5xx).
    Server,
    /// Connection refused, timed out, or the stream stopped mid-way.
    Network,
    /// The provider answered something that is not the protocol.
    Protocol,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotConfigured => "not_configured",
            ErrorKind::Auth => "auth",
            ErrorKind::RateLimit => "rate_limit",
            ErrorKind::NoCredit => "no_credit",
            ErrorKind::ContextTooLong => "context_too_long",
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::Server => "server",
            ErrorKind::Network => "network",
            ErrorKind::Protocol => "protocol",
        }
    }

    /// Whether trying again later can help.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::RateLimit | ErrorKind::Server | ErrorKind::Network
        )
    }
}

/// A failed model call: a sentence for the person, and details for the log.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{message}")]
pub struct LlmError {
    pub kind: ErrorKind,
    /// What the person sees.
    pub message: String,
    /// What the provider said, for the log (may be long; never shown raw).
    pub detail: String,
    pub status: Option<u16>,
    pub retry_after: Option<Duration>,
}

impl LlmError {
    pub fn new(kind: ErrorKind, message: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            detail: detail.into(),
            status: None,
            retry_after: None,
        }
    }

    pub fn not_configured(message: impl Into<String>) -> Self {
        let message = message.into();
        Self::new(ErrorKind::NotConfigured, message.clone(), message)
    }

    pub fn network(detail: impl Into<String>) -> Self {
        let detail = detail.into();
        Self::new(
            ErrorKind::Network,
            format!(
                "Could not reach the model provider ({}). Check the network and the provider's address.",
                short(&detail)
            ),
            detail,
        )
    }

    /// The answer began and then stopped (retryable, like a network failure).
    pub fn cut(detail: impl Into<String>) -> Self {
        let detail = detail.into();
        Self::new(
            ErrorKind::Network,
            format!(
                "The model provider stopped sending its answer mid-way ({}).",
                short(&detail)
            ),
            detail,
        )
    }

    pub fn protocol(detail: impl Into<String>) -> Self {
        let detail = detail.into();
        Self::new(
            ErrorKind::Protocol,
            format!(
                "The model provider sent a response CodeFlux could not read ({}).",
                short(&detail)
            ),
            detail,
        )
    }

    /// Classifies an HTTP error answer from the provider; the message quotes the provider.
    pub fn from_status(status: u16, body: &str, retry_after: Option<Duration>) -> Self {
        let said = provider_message(body);
        let lower = format!("{said} {body}").to_lowercase();
        let quoted = format!("{status}: \u{201c}{}\u{201d}", short(&said));
        let (kind, message) = match status {
            401 | 403 => (
                ErrorKind::Auth,
                format!(
                    "The model provider refused the API key ({quoted}). Check LLM_API_KEY / OPENROUTER_API_KEY."
                ),
            ),
            402 => (
                ErrorKind::NoCredit,
                format!(
                    "The model provider says the account has no credit left ({quoted}). Add credit at the provider, or pick a free model."
                ),
            ),
            413 => (
                ErrorKind::ContextTooLong,
                format!(
                    "The conversation is too long for the model's context window ({quoted}). Start a new project or pick a model with a larger context."
                ),
            ),
            400..=499 if is_context_error(&lower) => (
                ErrorKind::ContextTooLong,
                format!(
                    "The conversation is too long for the model's context window ({quoted}). Start a new project or pick a model with a larger context."
                ),
            ),
            429 => (
                ErrorKind::RateLimit,
                format!(
                    "The model provider is rate-limiting requests ({quoted}). Wait a little and retry, or pick another model."
                ),
            ),
            400..=499 => (
                ErrorKind::BadRequest,
                format!(
                    "The model provider rejected the request ({quoted}). Check the model name and the provider settings."
                ),
            ),
            _ => (
                ErrorKind::Server,
                format!(
                    "The model provider had an internal problem ({quoted}). Try again in a moment."
                ),
            ),
        };
        Self {
            kind,
            message,
            detail: format!("HTTP {status}: {}", short_n(body, 2000)),
            status: Some(status),
            retry_after,
        }
    }

    /// An error object the provider sent inside a 200 answer (streamed or whole): classified
    /// by its code or its words, quoted.
    pub fn from_error_object(error: &serde_json::Value) -> Self {
        let text = error
            .get("message")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
            .or_else(|| error.as_str().map(str::to_owned))
            .unwrap_or_else(|| error.to_string());
        let code = error.get("code").or_else(|| error.get("type"));
        let numeric = code
            .and_then(serde_json::Value::as_u64)
            .and_then(|c| u16::try_from(c).ok())
            .filter(|c| (400..600).contains(c));
        let named = code
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_lowercase();
        let lower = format!("{named} {}", text.to_lowercase());
        let status = numeric.unwrap_or_else(|| {
            if is_context_error(&lower) {
                400
            } else if lower.contains("credit")
                || lower.contains("insufficient_quota")
                || lower.contains("payment")
            {
                402
            } else if lower.contains("rate") && lower.contains("limit") || named.contains("rate") {
                429
            } else if lower.contains("api key")
                || lower.contains("invalid_api_key")
                || lower.contains("unauthorized")
            {
                401
            } else {
                502
            }
        });
        let body = serde_json::json!({"error": {"message": text, "code": named}}).to_string();
        let mut e = Self::from_status(status, &body, None);
        e.message = format!(
            "The model provider reported an error in its answer: {}",
            e.message
        );
        e.detail = format!(
            "error object in a 200 answer: {}",
            short_n(&error.to_string(), 2000)
        );
        e
    }
}

fn is_context_error(lower: &str) -> bool {
    [
        "context length",
        "context_length",
        "maximum context",
        "too many tokens",
        "prompt is too long",
        "context window",
        "input is too long",
        "reduce the length",
        "exceeds the context",
        "tokens exceed",
        "too long for the model",
    ]
    .iter()
    .any(|n| lower.contains(n))
}

/// The provider's own error message out of a JSON error body, or the body itself. OpenRouter
/// passes the upstream provider's words in `error.metadata.raw`: they are added.
pub(crate) fn provider_message(body: &str) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let Some(v) = parsed.as_ref() else {
        return body.trim().to_owned();
    };
    let main = v
        .pointer("/error/message")
        .or_else(|| v.pointer("/message"))
        .or_else(|| v.pointer("/error"))
        .or_else(|| v.pointer("/detail"))
        .and_then(|m| m.as_str().map(str::to_owned))
        .unwrap_or_else(|| body.trim().to_owned());
    match v.pointer("/error/metadata/raw").and_then(|r| r.as_str()) {
        Some(raw) if !raw.trim().is_empty() && !main.contains(raw.trim()) => {
            format!("{main}: {}", provider_message(raw.trim()))
        }
        _ => main,
    }
}

fn short(s: &str) -> String {
    short_n(s, 200)
}

fn short_n(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        None => s.to_owned(),
        Some((cut, _)) => format!("{}…", &s[..cut]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified() {
        assert_eq!(LlmError::from_status(401, "{}", None).kind, ErrorKind::Auth);
        assert_eq!(
            LlmError::from_status(429, "{}", None).kind,
            ErrorKind::RateLimit
        );
        assert_eq!(
            LlmError::from_status(503, "{}", None).kind,
            ErrorKind::Server
        );
        let e = LlmError::from_status(
            400,
            r#"{"error":{"message":"This model's maximum context length is 8192 tokens"}}"#,
            None,
        );
        assert_eq!(e.kind, ErrorKind::ContextTooLong);
        let e = LlmError::from_status(404, r#"{"error":{"message":"No such model: x"}}"#, None);
        assert_eq!(e.kind, ErrorKind::BadRequest);
        assert!(e.message.contains("No such model: x"));
        assert!(ErrorKind::Network.retryable() && !ErrorKind::Auth.retryable());
        let e = LlmError::from_status(402, r#"{"error":{"message":"Insufficient credits"}}"#, None);
        assert_eq!(e.kind, ErrorKind::NoCredit);
        assert!(!e.kind.retryable());
        assert!(e.message.contains("Insufficient credits"), "{}", e.message);
        let e = LlmError::from_status(
            400,
            r#"{"error":{"message":"This model's maximum context length is 8192 tokens"}}"#,
            None,
        );
        assert!(
            e.message.contains("8192 tokens"),
            "the provider's words: {}",
            e.message
        );
    }

    #[test]
    fn error_objects_in_answers_are_classified_by_code_or_words() {
        let kind = |v: serde_json::Value| LlmError::from_error_object(&v).kind;
        assert_eq!(
            kind(serde_json::json!({"code": 429, "message": "slow"})),
            ErrorKind::RateLimit
        );
        assert_eq!(
            kind(serde_json::json!({"code": "rate_limit_exceeded", "message": "x"})),
            ErrorKind::RateLimit
        );
        assert_eq!(
            kind(serde_json::json!({"message": "Provider returned error", "code": 502})),
            ErrorKind::Server
        );
        assert_eq!(
            kind(serde_json::json!({"code": "context_length_exceeded", "message": "too big"})),
            ErrorKind::ContextTooLong
        );
        assert_eq!(
            kind(serde_json::json!({"code": 402, "message": "no credits"})),
            ErrorKind::NoCredit
        );
        assert_eq!(kind(serde_json::json!("plain words")), ErrorKind::Server);
        let e = LlmError::from_error_object(
            &serde_json::json!({"code": 429, "message": "Rate limit exceeded: free-models-per-min"}),
        );
        assert!(e.message.contains("free-models-per-min"), "{}", e.message);
    }
}
