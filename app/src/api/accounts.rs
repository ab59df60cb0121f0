//! Accounts: sign-up, sign-in, sessions, API tokens, invites.

use codeflux_protocol::{Account, ApiToken, Invite, NewApiToken};
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use super::{ApiError, Deleted};
#[cfg(feature = "ssr")]
use super::{actor, redirect_plain_form, services};
#[cfg(feature = "ssr")]
use codeflux_protocol::AppError;

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
