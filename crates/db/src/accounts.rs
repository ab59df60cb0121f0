//! Accounts: users, sessions, API tokens, invites. Secrets arrive here already hashed (the
//! SHA-256 of a session token, API token or invite code; an argon2id hash of a password).

use chrono::{DateTime, Utc};
use codeflux_protocol::{ApiToken, Invite};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, IsolationLevel, PaginatorTrait, QueryFilter,
    QueryOrder, Set, TransactionTrait,
};
use uuid::Uuid;

use crate::entity::{api_token, invite, project, session, user};
use crate::{Db, DbError, new_id, now};

/// A user as the server needs it (with the password hash; never sent to a client).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRow {
    pub id: Uuid,
    pub email: String,
    pub password_hash: String,
    pub is_admin: bool,
    pub created_at: DateTime<Utc>,
}

impl From<user::Model> for UserRow {
    fn from(m: user::Model) -> Self {
        UserRow {
            id: m.id,
            email: m.email,
            password_hash: m.password_hash,
            is_admin: m.is_admin,
            created_at: m.created_at,
        }
    }
}

/// Who may sign up once the first account exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignUpPolicy {
    Open,
    /// With an admin's invite (the SHA-256 of its code, if one was given).
    Invite,
    Closed,
}

/// What a sign-up did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignUp {
    /// The account exists; `first` says it is the first (the admin, who took over the
    /// projects that had no owner).
    Created {
        user: UserRow,
        first: bool,
    },
    EmailTaken,
    InviteRequired,
    InviteInvalid,
    Closed,
}

/// Creates an account in one transaction: the first account becomes the admin (whatever the
/// policy) and takes over every project without an owner; later ones follow `policy`, an
/// invite being used up at the same time.
pub async fn sign_up(
    db: &Db,
    email: &str,
    password_hash: &str,
    policy: SignUpPolicy,
    invite_hash: Option<&str>,
) -> Result<SignUp, DbError> {
    // Serializable so that two first sign-ups at once cannot both become admin (PostgreSQL;
    // SQLite serializes writers anyway).
    let txn = db
        .begin_with_config(Some(IsolationLevel::Serializable), None)
        .await?;
    let first = user::Entity::find().count(&txn).await? == 0;
    if user::Entity::find()
        .filter(user::Column::Email.eq(email))
        .one(&txn)
        .await?
        .is_some()
    {
        return Ok(SignUp::EmailTaken);
    }
    let id = new_id();
    let now = now();
    if !first {
        match (policy, invite_hash) {
            (SignUpPolicy::Open, _) => {}
            (SignUpPolicy::Closed, _) => return Ok(SignUp::Closed),
            (SignUpPolicy::Invite, None) => return Ok(SignUp::InviteRequired),
            (SignUpPolicy::Invite, Some(code)) => {
                let used = invite::Entity::update_many()
                    .col_expr(invite::Column::UsedAt, Expr::value(now))
                    .col_expr(invite::Column::UsedBy, Expr::value(id))
                    .filter(invite::Column::CodeHash.eq(code))
                    .filter(invite::Column::UsedAt.is_null())
                    .filter(invite::Column::ExpiresAt.gt(now))
                    .exec(&txn)
                    .await?;
                if used.rows_affected != 1 {
                    return Ok(SignUp::InviteInvalid);
                }
            }
        }
    }
    let row = user::ActiveModel {
        id: Set(id),
        email: Set(email.to_owned()),
        password_hash: Set(password_hash.to_owned()),
        is_admin: Set(first),
        created_at: Set(now),
    }
    .insert(&txn)
    .await?;
    if first {
        project::Entity::update_many()
            .col_expr(project::Column::OwnerId, Expr::value(id))
            .filter(project::Column::OwnerId.is_null())
            .exec(&txn)
            .await?;
    }
    txn.commit().await?;
    Ok(SignUp::Created {
        user: row.into(),
        first,
    })
}

pub async fn find_user_by_email(db: &Db, email: &str) -> Result<Option<UserRow>, DbError> {
    Ok(user::Entity::find()
        .filter(user::Column::Email.eq(email))
        .one(db)
        .await?
        .map(UserRow::from))
}

pub async fn find_user(db: &Db, id: Uuid) -> Result<Option<UserRow>, DbError> {
    Ok(user::Entity::find_by_id(id)
        .one(db)
        .await?
        .map(UserRow::from))
}

pub async fn count_users(db: &Db) -> Result<u64, DbError> {
    Ok(user::Entity::find().count(db).await?)
}

/// Stores a new session (by the hash of its token).
pub async fn insert_session(
    db: &Db,
    token_hash: &str,
    user_id: Uuid,
    expires_at: DateTime<Utc>,
) -> Result<(), DbError> {
    session::ActiveModel {
        token_hash: Set(token_hash.to_owned()),
        user_id: Set(user_id),
        created_at: Set(now()),
        expires_at: Set(expires_at),
    }
    .insert(db)
    .await?;
    Ok(())
}

/// The user of a session that has not expired.
pub async fn session_user(db: &Db, token_hash: &str) -> Result<Option<UserRow>, DbError> {
    let found = session::Entity::find_by_id(token_hash.to_owned())
        .filter(session::Column::ExpiresAt.gt(now()))
        .find_also_related(user::Entity)
        .one(db)
        .await?;
    Ok(found.and_then(|(_, u)| u).map(UserRow::from))
}

/// Ends one session. Whether it existed.
pub async fn delete_session(db: &Db, token_hash: &str) -> Result<bool, DbError> {
    let r = session::Entity::delete_by_id(token_hash.to_owned())
        .exec(db)
        .await?;
    Ok(r.rows_affected > 0)
}

/// Ends every session of a user; returns how many.
pub async fn delete_user_sessions(db: &Db, user_id: Uuid) -> Result<u64, DbError> {
    let r = session::Entity::delete_many()
        .filter(session::Column::UserId.eq(user_id))
        .exec(db)
        .await?;
    Ok(r.rows_affected)
}

/// Removes expired sessions and invites' leftovers; returns how many sessions went.
pub async fn delete_expired_sessions(db: &Db) -> Result<u64, DbError> {
    let r = session::Entity::delete_many()
        .filter(session::Column::ExpiresAt.lte(now()))
        .exec(db)
        .await?;
    Ok(r.rows_affected)
}

/// Stores a new API token (by its hash).
pub async fn insert_token(
    db: &Db,
    user_id: Uuid,
    name: &str,
    prefix: &str,
    token_hash: &str,
) -> Result<ApiToken, DbError> {
    let m = api_token::ActiveModel {
        id: Set(new_id()),
        user_id: Set(user_id),
        name: Set(name.to_owned()),
        prefix: Set(prefix.to_owned()),
        token_hash: Set(token_hash.to_owned()),
        created_at: Set(now()),
        last_used_at: Set(None),
    }
    .insert(db)
    .await?;
    Ok(token_dto(m))
}

fn token_dto(m: api_token::Model) -> ApiToken {
    ApiToken {
        id: m.id,
        name: m.name,
        prefix: m.prefix,
        created_at: m.created_at,
        last_used_at: m.last_used_at,
    }
}

/// The user of an API token (and marks the token used).
pub async fn token_user(db: &Db, token_hash: &str) -> Result<Option<UserRow>, DbError> {
    let found = api_token::Entity::find()
        .filter(api_token::Column::TokenHash.eq(token_hash))
        .find_also_related(user::Entity)
        .one(db)
        .await?;
    let Some((token, Some(user))) = found else {
        return Ok(None);
    };
    // At most one write a minute per token.
    let stale = token
        .last_used_at
        .is_none_or(|t| now() - t > chrono::Duration::seconds(60));
    if stale {
        api_token::Entity::update_many()
            .col_expr(api_token::Column::LastUsedAt, Expr::value(now()))
            .filter(api_token::Column::Id.eq(token.id))
            .exec(db)
            .await?;
    }
    Ok(Some(user.into()))
}

/// A user's tokens, newest first.
pub async fn list_tokens(db: &Db, user_id: Uuid) -> Result<Vec<ApiToken>, DbError> {
    Ok(api_token::Entity::find()
        .filter(api_token::Column::UserId.eq(user_id))
        .order_by_desc(api_token::Column::CreatedAt)
        .all(db)
        .await?
        .into_iter()
        .map(token_dto)
        .collect())
}

/// Revokes one of a user's tokens. Whether it was theirs and existed.
pub async fn delete_token(db: &Db, user_id: Uuid, id: Uuid) -> Result<bool, DbError> {
    let r = api_token::Entity::delete_many()
        .filter(api_token::Column::Id.eq(id))
        .filter(api_token::Column::UserId.eq(user_id))
        .exec(db)
        .await?;
    Ok(r.rows_affected > 0)
}

/// Stores a new invite (by the hash of its code).
pub async fn insert_invite(
    db: &Db,
    created_by: Uuid,
    code_hash: &str,
    email: Option<String>,
    expires_at: DateTime<Utc>,
) -> Result<Invite, DbError> {
    let m = invite::ActiveModel {
        id: Set(new_id()),
        code_hash: Set(code_hash.to_owned()),
        email: Set(email),
        created_by: Set(created_by),
        created_at: Set(now()),
        expires_at: Set(expires_at),
        used_at: Set(None),
        used_by: Set(None),
    }
    .insert(db)
    .await?;
    Ok(invite_dto(m))
}

fn invite_dto(m: invite::Model) -> Invite {
    Invite {
        id: m.id,
        email: m.email,
        code: None,
        url: None,
        created_at: m.created_at,
        expires_at: m.expires_at,
        used_at: m.used_at,
    }
}

/// Every invite, newest first.
pub async fn list_invites(db: &Db) -> Result<Vec<Invite>, DbError> {
    Ok(invite::Entity::find()
        .order_by_desc(invite::Column::CreatedAt)
        .all(db)
        .await?
        .into_iter()
        .map(invite_dto)
        .collect())
}

/// Withdraws an invite. Whether it existed.
pub async fn delete_invite(db: &Db, id: Uuid) -> Result<bool, DbError> {
    let r = invite::Entity::delete_by_id(id).exec(db).await?;
    Ok(r.rows_affected > 0)
}
