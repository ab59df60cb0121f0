//! Server functions: the typed RPC between the page and the server (in place of tRPC).
//!
//! Every function has an explicit endpoint under `/api`, takes URL-encoded form fields and
//! answers JSON, so any HTTP client can call it. Arguments are plain strings with defaults:
//! a missing or malformed field becomes a clear 400 from the validation in `codeflux-core`
//! instead of a deserialization failure.

use codeflux_protocol::{
    Account, ApiToken, AppError, ErrorKind, Invite, Message, NewApiToken, Project, Run,
};
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

/// Who makes this request: put into the request by the server's auth layer.
#[cfg(feature = "ssr")]
fn actor() -> Result<codeflux_core::Actor, ApiError> {
    use_context::<http::request::Parts>()
        .and_then(|p| p.extensions.get::<codeflux_core::Actor>().cloned())
        .ok_or_else(|| ApiError(AppError::unauthorized("Sign in first.")))
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
    let project = services()?
        .create_project(&actor()?, &prompt, Some(&template))
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

/// A project's messages, oldest first, each with its fragment or null.
#[server(endpoint = "messages/get_many")]
pub async fn get_messages(#[server(default)] project_id: String) -> Result<Vec<Message>, ApiError> {
    Ok(services()?.list_messages(&actor()?, &project_id).await?)
}

/// A follow-up message from the person.
#[server(endpoint = "messages/create")]
pub async fn create_message(
    #[server(default)] project_id: String,
    #[server(default)] content: String,
) -> Result<Message, ApiError> {
    let message = services()?
        .create_message(&actor()?, &project_id, &content)
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
pub async fn get_project_view(
    #[server(default)] id: String,
) -> Result<codeflux_protocol::ProjectView, ApiError> {
    Ok(services()?.project_view(&actor()?, &id).await?)
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

// ---------------------------------------------------------------------------------------------
// Accounts

/// The session cookie's name (the preview proxy strips every cookie starting "codeflux").
pub const SESSION_COOKIE: &str = "codeflux_session";

#[cfg(feature = "ssr")]
fn client_addr() -> std::net::IpAddr {
    use_context::<http::request::Parts>()
        .and_then(|p| p.extensions.get::<crate::ClientAddr>().map(|a| a.0))
        .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
}

/// Sets (or, with `None`, clears) the session cookie on the answer.
#[cfg(feature = "ssr")]
fn set_session_cookie(session: Option<&codeflux_core::Session>) -> Result<(), ApiError> {
    let secure = services()?.auth().config().secure_cookies;
    let value = match session {
        Some(s) => format!(
            "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{}",
            s.token,
            s.max_age.as_secs(),
            if secure { "; Secure" } else { "" }
        ),
        None => format!(
            "{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{}",
            if secure { "; Secure" } else { "" }
        ),
    };
    let header = http::HeaderValue::from_str(&value)
        .map_err(|_| ApiError(AppError::internal("The session cookie could not be set.")))?;
    if let Some(res) = use_context::<leptos_axum::ResponseOptions>() {
        res.append_header(http::header::SET_COOKIE, header);
    }
    Ok(())
}

/// The session token the request's cookie carries, if any.
#[cfg(feature = "ssr")]
fn session_token() -> Option<String> {
    let parts = use_context::<http::request::Parts>()?;
    crate::cookie_value(&parts.headers, SESSION_COOKIE)
}

/// Where to go after signing in: a path on this site, never another site.
pub fn safe_next(next: &str) -> String {
    let n = next.trim();
    if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') && !n.contains("://") {
        n.to_owned()
    } else {
        "/".to_owned()
    }
}

/// Creates an account (the first one is the admin; later ones need an invite unless sign-up
/// is open) and signs it in.
#[server(endpoint = "auth/sign_up")]
pub async fn sign_up(
    #[server(default)] email: String,
    #[server(default)] password: String,
    #[server(default)] invite: String,
    #[server(default)] next: String,
) -> Result<Account, ApiError> {
    let invite = (!invite.trim().is_empty()).then_some(invite.as_str());
    let session = services()?
        .auth()
        .sign_up(&email, &password, invite, client_addr())
        .await?;
    set_session_cookie(Some(&session))?;
    redirect_plain_form(&safe_next(&next));
    Ok(session.account)
}

/// Signs in with email and password.
#[server(endpoint = "auth/sign_in")]
pub async fn sign_in(
    #[server(default)] email: String,
    #[server(default)] password: String,
    #[server(default)] next: String,
) -> Result<Account, ApiError> {
    let session = services()?
        .auth()
        .sign_in(&email, &password, client_addr())
        .await?;
    set_session_cookie(Some(&session))?;
    redirect_plain_form(&safe_next(&next));
    Ok(session.account)
}

/// What signing out did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedOut {
    /// Sessions ended (more than one with `everywhere`).
    pub sessions: u64,
}

/// Ends this session (`everywhere`: every session of the account).
#[server(endpoint = "auth/sign_out")]
pub async fn sign_out(#[server(default)] everywhere: String) -> Result<SignedOut, ApiError> {
    let services = services()?;
    let mut sessions = 0;
    if matches!(everywhere.trim(), "true" | "1" | "on" | "yes") {
        sessions = services.auth().sign_out_everywhere(&actor()?).await?;
    } else if let Some(token) = session_token() {
        services.auth().sign_out(&token).await?;
        sessions = 1;
    }
    set_session_cookie(None)?;
    redirect_plain_form("/sign-in");
    Ok(SignedOut { sessions })
}

/// Who is signed in.
#[server(endpoint = "auth/me")]
pub async fn me() -> Result<Account, ApiError> {
    Ok(services()?.auth().me(&actor()?).await?)
}

/// A new API token: send it as `Authorization: Bearer <token>`. Shown only in this answer.
#[server(endpoint = "auth/tokens/create")]
pub async fn create_token(#[server(default)] name: String) -> Result<NewApiToken, ApiError> {
    Ok(services()?.auth().create_token(&actor()?, &name).await?)
}

/// The account's API tokens (without their secrets).
#[server(endpoint = "auth/tokens/list")]
pub async fn list_tokens() -> Result<Vec<ApiToken>, ApiError> {
    Ok(services()?.auth().list_tokens(&actor()?).await?)
}

/// Revokes one of the account's tokens.
#[server(endpoint = "auth/tokens/revoke")]
pub async fn revoke_token(#[server(default)] id: String) -> Result<Deleted, ApiError> {
    services()?.auth().revoke_token(&actor()?, &id).await?;
    Ok(Deleted { id, deleted: true })
}

/// A single-use invite link (admins).
#[server(endpoint = "auth/invites/create")]
pub async fn create_invite(#[server(default)] email: String) -> Result<Invite, ApiError> {
    let email = (!email.trim().is_empty()).then_some(email.as_str());
    Ok(services()?.auth().create_invite(&actor()?, email).await?)
}

/// Every invite (admins).
#[server(endpoint = "auth/invites/list")]
pub async fn list_invites() -> Result<Vec<Invite>, ApiError> {
    Ok(services()?.auth().list_invites(&actor()?).await?)
}

/// Withdraws an invite (admins).
#[server(endpoint = "auth/invites/revoke")]
pub async fn revoke_invite(#[server(default)] id: String) -> Result<Deleted, ApiError> {
    services()?.auth().revoke_invite(&actor()?, &id).await?;
    Ok(Deleted { id, deleted: true })
}
