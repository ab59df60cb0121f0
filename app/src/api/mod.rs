//! Server functions: the typed RPC between the page and the server (in place of tRPC).
//!
//! Every function has an explicit endpoint under `/api`, takes URL-encoded form fields and
//! answers JSON, so any HTTP client can call it. Arguments are plain strings with defaults:
//! a missing or malformed field becomes a clear 400 from the validation in `codeflux-core`
//! instead of a deserialization failure.

mod accounts;
mod projects;
mod work;

pub use accounts::*;
pub use projects::*;
pub use work::*;

use codeflux_protocol::{AppError, ErrorKind};
#[cfg(feature = "ssr")]
use leptos::prelude::*;
use serde::{Deserialize, Serialize};
use server_fn::codec::JsonEncoding;
use server_fn::error::{FromServerFnError, ServerFnErrorErr};

/// The error of every server function: an [`AppError`] that Leptos can carry.
///
/// The server sets the HTTP status from its kind (see `server::api_status`), so a client's
/// mistake is a 4xx and never a 500.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(transparent)]
#[error("{0}")]
pub struct ApiError(pub AppError);

impl ApiError {
    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    pub fn message(&self) -> &str {
        &self.0.message
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        ApiError(e)
    }
}

impl FromServerFnError for ApiError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        ApiError(match value {
            ServerFnErrorErr::Args(e) | ServerFnErrorErr::MissingArg(e) => {
                AppError::bad_input(format!("The request could not be read: {e}"))
            }
            ServerFnErrorErr::Request(_) => AppError::unavailable(
                "Could not reach the server. Check your connection and try again.",
            ),
            ServerFnErrorErr::UnsupportedRequestMethod(e) => AppError::bad_input(e),
            other => AppError::internal(other.to_string()),
        })
    }
}

#[cfg(feature = "ssr")]
pub(crate) fn services() -> Result<codeflux_core::Services, ApiError> {
    use_context::<codeflux_core::Services>().ok_or_else(|| {
        ApiError(AppError::internal(
            "The server is not set up (no services).",
        ))
    })
}

/// Who makes this request: put into the request by the server's auth layer.
#[cfg(feature = "ssr")]
pub(crate) fn actor() -> Result<codeflux_core::Actor, ApiError> {
    use_context::<http::request::Parts>()
        .and_then(|p| p.extensions.get::<codeflux_core::Actor>().cloned())
        .ok_or_else(|| ApiError(AppError::unauthorized("Sign in first.")))
}

/// For a browser form posted without JavaScript: answer with a redirect to `path`.
#[cfg(feature = "ssr")]
pub(crate) fn redirect_plain_form(path: &str) {
    let accepts_html = use_context::<http::request::Parts>()
        .and_then(|p| {
            p.headers
                .get("accept")
                .and_then(|v| v.to_str().ok())
                .map(|a| a.contains("text/html"))
        })
        .unwrap_or(false);
    if accepts_html {
        leptos_axum::redirect(path);
    }
}
