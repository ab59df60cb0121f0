//! Errors classified into what a person can act on.

use std::time::Duration;

/// The class of a failure; decides whether it is retried and what the person is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// No provider, or an incomplete one.
    NotConfigured,
    /// The key was refused (401/403).
    Auth,
    /// Too many requests (429) or the provider's quota.
    RateLimit,
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

    /// Classifies an HTTP error answer from the provider.
    pub fn from_status(status: u16, body: &str, retry_after: Option<Duration>) -> Self {
        let said = provider_message(body);
        let lower = said.to_lowercase();
        let (kind, message) = match status {
            401 | 403 => (
                ErrorKind::Auth,
                format!("The model provider refused the API key ({status}: {}). Check LLM_API_KEY / OPENROUTER_API_KEY.", short(&said)),
            ),
            429 => (
                ErrorKind::RateLimit,
                format!("The model provider is rate-limiting requests ({}). Wait a little and retry, or use another model.", short(&said)),
            ),
            402 => (
                ErrorKind::RateLimit,
                format!("The model provider says the account has no credit left ({}).", short(&said)),
            ),
            413 => (
                ErrorKind::ContextTooLong,
                "The conversation is too long for the model's context window. Start a new project or use a model with a larger context.".to_owned(),
            ),
            400..=499 if is_context_error(&lower) => (
                ErrorKind::ContextTooLong,
                "The conversation is too long for the model's context window. Start a new project or use a model with a larger context.".to_owned(),
            ),
            400..=499 => (
                ErrorKind::BadRequest,
                format!("The model provider rejected the request ({status}: {}). Check LLM_MODEL and the provider settings.", short(&said)),
            ),
            _ => (
                ErrorKind::Server,
                format!("The model provider had an internal problem ({status}: {}). Try again in a moment.", short(&said)),
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
}

fn is_context_error(lower: &str) -> bool {
    [
        "context length",
        "context_length",
        "maximum context",
        "too many tokens",
        "prompt is too long",
        "context window",
    ]
    .iter()
    .any(|n| lower.contains(n))
}

/// The provider's own error message out of a JSON error body, or the body itself.
pub(crate) fn provider_message(body: &str) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    parsed
        .as_ref()
        .and_then(|v| {
            v.pointer("/error/message")
                .or_else(|| v.pointer("/message"))
                .or_else(|| v.pointer("/error"))
        })
        .and_then(|m| m.as_str().map(str::to_owned))
        .unwrap_or_else(|| body.trim().to_owned())
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
    }
}
