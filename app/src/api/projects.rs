//! Projects, their conversation, versions and runs.

use codeflux_protocol::{Message, Project, ProjectView, Run};
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use super::ApiError;
#[cfg(feature = "ssr")]
use super::{actor, redirect_plain_form, services};
#[cfg(feature = "ssr")]
use codeflux_protocol::AppError;

/// Creates a project from a prompt; the prompt becomes its first USER message.
/// `template` is "vite-react" (the default) or "nextjs"; `model` one of models/list (empty:
/// the server's default; unknown: 400 and nothing stored).
#[server(endpoint = "projects/create")]
pub async fn create_project(
    #[server(default)] prompt: String,
    #[server(default)] template: String,
    #[server(default)] model: String,
) -> Result<Project, ApiError> {
    let project = services()?
        .create_project(&actor()?, &prompt, Some(&template), Some(&model))
        .await?;
    redirect_plain_form(&format!("/projects/{}", project.id));
    Ok(project)
}

/// Every project, newest first.
#[server(endpoint = "projects/get_many")]
pub async fn get_projects() -> Result<Vec<Project>, ApiError> {
    Ok(services()?.list_projects(&actor()?).await?)
}

/// One project.
#[server(endpoint = "projects/get")]
pub async fn get_project(#[server(default)] id: String) -> Result<Project, ApiError> {
    Ok(services()?.get_project(&actor()?, &id).await?)
}

/// A project's messages, oldest first, each with its fragment or null; an assistant message
/// also with its model, `usage` (prompt and completion tokens, cost in USD or null), the
/// checks of its app, and its text rendered from Markdown as sanitized `html`.
#[server(endpoint = "messages/get_many")]
pub async fn get_messages(#[server(default)] project_id: String) -> Result<Vec<Message>, ApiError> {
    let mut list = services()?.list_messages(&actor()?, &project_id).await?;
    render_markdown(&mut list);
    Ok(list)
}

/// Fills the assistant messages' `html` (Markdown rendered and sanitized on the server).
#[cfg(feature = "ssr")]
fn render_markdown(list: &mut [Message]) {
    for m in list
        .iter_mut()
        .filter(|m| m.role == codeflux_protocol::Role::Assistant)
    {
        let text = crate::live::display_text(&m.content);
        m.html = Some(crate::markdown::to_html(&text));
    }
}

/// A follow-up message from the person; `model` as in projects/create.
#[server(endpoint = "messages/create")]
pub async fn create_message(
    #[server(default)] project_id: String,
    #[server(default)] content: String,
    #[server(default)] model: String,
) -> Result<Message, ApiError> {
    let message = services()?
        .create_message(&actor()?, &project_id, &content, Some(&model))
        .await?;
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
    let cancelled = services()?.cancel_runs(&actor()?, &project_id).await?;
    Ok(Cancelled { cancelled })
}

/// The project's queued and running runs, oldest first.
#[server(endpoint = "runs/active")]
pub async fn active_runs(#[server(default)] project_id: String) -> Result<Vec<Run>, ApiError> {
    Ok(services()?.active_runs(&actor()?, &project_id).await?)
}

/// What the page needs to know about the server's set-up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerStatus {
    /// Set when no model provider is configured: what to set.
    pub llm_problem: Option<String>,
}

#[server(endpoint = "system/status")]
pub async fn system_status() -> Result<ServerStatus, ApiError> {
    actor()?;
    Ok(ServerStatus {
        llm_problem: services()?.llm_problem(),
    })
}

/// Everything the project page shows: the project, its conversation, the runs still working.
#[server(endpoint = "projects/view")]
pub async fn get_project_view(#[server(default)] id: String) -> Result<ProjectView, ApiError> {
    let mut view = services()?.project_view(&actor()?, &id).await?;
    render_markdown(&mut view.messages);
    Ok(view)
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
    let fragment = services()?.fragment(&actor()?, &fragment_id).await?;
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
    Ok(services()?
        .show_version(&actor()?, &project_id, &fragment_id)
        .await?)
}

/// Where to open a project on another device, and its QR code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedLink {
    pub url: String,
    /// An SVG image (made on the server) of the QR code of `url`.
    pub svg: String,
}

/// The project page's public address and its QR code ("open on your phone").
#[server(endpoint = "projects/share")]
pub async fn share_link(#[server(default)] id: String) -> Result<SharedLink, ApiError> {
    let (url, svg) = services()?.share_link(&actor()?, &id).await?;
    Ok(SharedLink { url, svg })
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
    services()?.delete_project(&actor()?, &id).await?;
    redirect_plain_form("/");
    Ok(Deleted { id, deleted: true })
}
