//! Server functions: the typed RPC between the page and the server (in place of tRPC).
//!
//! Every function has an explicit endpoint under `/api`, takes URL-encoded form fields and
//! answers JSON, so any HTTP client can call it. Arguments are plain strings with defaults:
//! a missing or malformed field becomes a clear 400 from the validation in `codeflux-core`
//! instead of a deserialization failure.

use codeflux_protocol::{AppError, ErrorKind, Message, Project, Run};
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
fn services() -> Result<codeflux_core::Services, ApiError> {
    use_context::<codeflux_core::Services>().ok_or_else(|| {
        ApiError(AppError::internal(
            "The server is not set up (no services).",
        ))
    })
}

/// For a browser form posted without JavaScript: answer with a redirect to `path`.
#[cfg(feature = "ssr")]
fn redirect_plain_form(path: &str) {
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

/// Creates a project from a prompt; the prompt becomes its first USER message.
/// `template` is "vite-react" (the default) or "nextjs".
#[server(endpoint = "projects/create")]
pub async fn create_project(
    #[server(default)] prompt: String,
    #[server(default)] template: String,
) -> Result<Project, ApiError> {
    let project = services()?.create_project(&prompt, Some(&template)).await?;
    redirect_plain_form(&format!("/projects/{}", project.id));
    Ok(project)
}

/// Every project, newest first.
#[server(endpoint = "projects/get_many")]
pub async fn get_projects() -> Result<Vec<Project>, ApiError> {
    Ok(services()?.list_projects().await?)
}

/// One project.
#[server(endpoint = "projects/get")]
pub async fn get_project(#[server(default)] id: String) -> Result<Project, ApiError> {
    Ok(services()?.get_project(&id).await?)
}

/// A project's messages, oldest first, each with its fragment or null.
#[server(endpoint = "messages/get_many")]
pub async fn get_messages(#[server(default)] project_id: String) -> Result<Vec<Message>, ApiError> {
    Ok(services()?.list_messages(&project_id).await?)
}

/// A follow-up message from the person.
#[server(endpoint = "messages/create")]
pub async fn create_message(
    #[server(default)] project_id: String,
    #[server(default)] content: String,
) -> Result<Message, ApiError> {
    let message = services()?.create_message(&project_id, &content).await?;
    redirect_plain_form(&format!("/projects/{}", message.project_id));
    Ok(message)
}

/// What stopping a project's runs did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cancelled {
    /// Runs stopped or dropped from the queue.
    pub cancelled: u32,
}

/// Stops the project's running run and drops its queued follow-ups.
#[server(endpoint = "runs/cancel")]
pub async fn cancel_runs(#[server(default)] project_id: String) -> Result<Cancelled, ApiError> {
    let cancelled = services()?.cancel_runs(&project_id).await?;
    Ok(Cancelled { cancelled })
}

/// The project's queued and running runs, oldest first.
#[server(endpoint = "runs/active")]
pub async fn active_runs(#[server(default)] project_id: String) -> Result<Vec<Run>, ApiError> {
    Ok(services()?.active_runs(&project_id).await?)
}

/// What the page needs to know about the server's set-up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerStatus {
    /// Set when no model provider is configured: what to set.
    pub llm_problem: Option<String>,
}

#[server(endpoint = "system/status")]
pub async fn system_status() -> Result<ServerStatus, ApiError> {
    Ok(ServerStatus {
        llm_problem: services()?.llm_problem(),
    })
}

/// Everything the project page shows: the project, its conversation, the runs still working.
#[server(endpoint = "projects/view")]
pub async fn get_project_view(
    #[server(default)] id: String,
) -> Result<codeflux_protocol::ProjectView, ApiError> {
    Ok(services()?.project_view(&id).await?)
}

/// A file of a version, with its syntax highlighted as HTML.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HighlightedFile {
    pub path: String,
    /// Lines of highlighted HTML (spans with `hl-` classes), already escaped.
    pub lines: Vec<String>,
}

#[server(endpoint = "fragments/file")]
pub async fn get_fragment_file(
    #[server(default)] fragment_id: String,
    #[server(default)] path: String,
) -> Result<HighlightedFile, ApiError> {
    let fragment = services()?.fragment(&fragment_id).await?;
    let content = fragment.files.get(&path).ok_or_else(|| {
        ApiError(AppError::not_found(format!(
            "This version has no file \"{}\".",
            codeflux_protocol::validate::shorten(&path, 100)
        )))
    })?;
    Ok(HighlightedFile {
        lines: crate::highlight::to_html_lines(&path, content),
        path,
    })
}

/// Shows a chosen version in the project's live preview (refused while a run works).
#[server(endpoint = "preview/show")]
pub async fn show_version(
    #[server(default)] project_id: String,
    #[server(default)] fragment_id: String,
) -> Result<(), ApiError> {
    Ok(services()?.show_version(&project_id, &fragment_id).await?)
}

/// What deleting a project did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deleted {
    pub id: String,
    pub deleted: bool,
}

/// Deletes a project: its runs are stopped, its sandbox and disk removed, its conversation
/// and versions deleted.
#[server(endpoint = "projects/delete")]
pub async fn delete_project(#[server(default)] id: String) -> Result<Deleted, ApiError> {
    services()?.delete_project(&id).await?;
    redirect_plain_form("/");
    Ok(Deleted { id, deleted: true })
}
