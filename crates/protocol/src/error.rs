use serde::{Deserialize, Serialize};

/// What went wrong, as far as a caller needs to know: it decides the HTTP status and how the
/// page presents the error.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The caller sent something we cannot accept (400). Nothing was stored.
    BadInput,
    /// The thing asked for does not exist (404).
    NotFound,
    /// The request conflicts with the current state (409).
    Conflict,
    /// Not signed in, or the credentials were not accepted (401).
    Unauthorized,
    /// Refused whoever asks: a cross-site request, or a right the account does not have (403).
    Forbidden,
    /// Too many attempts; try again after `retry_after` seconds (429).
    TooManyRequests,
    /// A dependency (database, model provider, sandbox) is not reachable right now (503).
    Unavailable,
    /// Our own fault (500). The details are in the server log, not in the message.
    Internal,
}

impl ErrorKind {
    /// The HTTP status this kind of error is answered with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::BadInput => 400,
            ErrorKind::NotFound => 404,
            ErrorKind::Conflict => 409,
            ErrorKind::Unauthorized => 401,
            ErrorKind::Forbidden => 403,
            ErrorKind::TooManyRequests => 429,
            ErrorKind::Unavailable => 503,
            ErrorKind::Internal => 500,
        }
    }
}

/// The error every server function returns: a kind and a sentence a person can act on.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct AppError {
    pub kind: ErrorKind,
    pub message: String,
    /// Seconds after which trying again makes sense (sent as `Retry-After`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

impl AppError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_input(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadInput, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unauthorized, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, message)
    }

    /// Too many attempts: try again in `secs` seconds.
    pub fn too_many(message: impl Into<String>, secs: u64) -> Self {
        Self {
            retry_after: Some(secs.max(1)),
            ..Self::new(ErrorKind::TooManyRequests, message)
        }
    }

    /// An internal error. Pass a message fit for the page; log the cause separately.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    pub fn http_status(&self) -> u16 {
        self.kind.http_status()
    }
}
