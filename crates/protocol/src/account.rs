//! Accounts, API tokens and invites as the API shows them (secrets appear once, on creation).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Who is signed in (`auth/me`). With accounts off (`CODEFLUX_AUTH=off`), `auth` is false and
/// there is no account: the one local person may do everything.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// Whether accounts are on.
    pub auth: bool,
    pub id: Option<Uuid>,
    pub email: Option<String>,
    pub is_admin: bool,
    /// "admin", "member", or "local" with accounts off.
    pub role: String,
    pub created_at: Option<DateTime<Utc>>,
}

/// A named API token (its secret is never shown again after creation).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ApiToken {
    pub id: Uuid,
    pub name: String,
    /// The first characters of the token, to tell tokens apart.
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A token just created: the only time its secret is shown.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct NewApiToken {
    pub id: Uuid,
    pub name: String,
    /// Send as `Authorization: Bearer <token>`.
    pub token: String,
    pub created_at: DateTime<Utc>,
}

/// A single-use invite to sign up.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Invite {
    pub id: Uuid,
    /// Who it is meant for, if the admin said.
    pub email: Option<String>,
    /// The code and the sign-up link: only when just created.
    pub code: Option<String>,
    pub url: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
}
