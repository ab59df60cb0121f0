//! Accounts: sign-up (the first account is the admin; then invite, open or closed), sign-in
//! with argon2id and rate limits, sessions and API tokens (stored as SHA-256 hashes), invites.
//! Knows nothing of HTTP: the server turns a [`Session`] into a cookie and a request into an
//! [`Actor`].

mod limiter;

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use codeflux_db::{Db, SignUp, SignUpPolicy, UserRow};
use codeflux_protocol::{Account, ApiToken, AppError, Invite, NewApiToken, validate};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::db_error;
use limiter::Limiter;

/// Who makes a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Actor {
    /// Accounts are off: the one local person, who may do everything.
    Local,
    /// A signed-in account.
    User {
        id: Uuid,
        email: String,
        is_admin: bool,
    },
}

impl Actor {
    fn from_row(u: &UserRow) -> Actor {
        Actor::User {
            id: u.id,
            email: u.email.clone(),
            is_admin: u.is_admin,
        }
    }

    /// The account's id (None with accounts off).
    pub fn user_id(&self) -> Option<Uuid> {
        match self {
            Actor::Local => None,
            Actor::User { id, .. } => Some(*id),
        }
    }
}

/// Settings of accounts, read once at start.
#[derive(Clone, Debug)]
pub struct AuthConfig {
    pub enabled: bool,
    pub signup: SignUpPolicy,
    /// Where browsers reach the app (invite links).
    pub public_url: String,
    /// Session cookies only over https (the public URL is https).
    pub secure_cookies: bool,
    pub session_ttl: Duration,
    pub invite_ttl: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            signup: SignUpPolicy::Invite,
            public_url: "http://127.0.0.1:3000".into(),
            secure_cookies: false,
            session_ttl: Duration::from_secs(30 * 24 * 3600),
            invite_ttl: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// A session just started: its token goes into the cookie, never into the database.
#[derive(Clone, Debug)]
pub struct Session {
    pub token: String,
    pub max_age: Duration,
    pub account: Account,
}

/// Failed sign-ins per account before a lock-out, and per client address.
const ACCOUNT_THRESHOLD: u32 = 5;
const ADDRESS_THRESHOLD: u32 = 20;
/// Sign-ups per address before a pause (each costs a password hash).
const SIGNUP_THRESHOLD: u32 = 10;

const WRONG_CREDENTIALS: &str = "Wrong email or password.";

#[derive(Clone)]
pub struct Auth(Arc<Inner>);

struct Inner {
    db: Db,
    cfg: AuthConfig,
    limiter: Limiter,
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn random_hex(bytes: usize) -> Result<String, AppError> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| {
        tracing::error!("the system's random source failed: {e}");
        AppError::internal("The server could not make a secret.")
    })?;
    Ok(hex::encode(buf))
}

fn argon2() -> Argon2<'static> {
    Argon2::default() // argon2id, v19, m = 19 MiB, t = 2, p = 1 (OWASP's minimum)
}

fn hash_password(password: &str) -> Result<String, AppError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt)
        .map_err(|_| AppError::internal("The server could not make a secret."))?;
    let salt = SaltString::encode_b64(&salt)
        .map_err(|_| AppError::internal("The server could not hash the password."))?;
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| {
            tracing::error!("hashing a password: {e}");
            AppError::internal("The server could not hash the password.")
        })
}

fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| argon2().verify_password(password.as_bytes(), &h).is_ok())
        .unwrap_or(false)
}

/// A hash to verify against when the email has no account, so that both cases take as long.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_password("codeflux-no-such-account").unwrap_or_default())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, AppError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| AppError::internal("The password could not be checked."))
}

fn account_of(u: &UserRow) -> Account {
    Account {
        auth: true,
        id: Some(u.id),
        email: Some(u.email.clone()),
        is_admin: u.is_admin,
        role: if u.is_admin { "admin" } else { "member" }.into(),
        created_at: Some(u.created_at),
    }
}

impl Auth {
    pub fn new(db: Db, cfg: AuthConfig) -> Self {
        Auth(Arc::new(Inner {
            db,
            cfg,
            limiter: Limiter::default(),
        }))
    }

    pub fn enabled(&self) -> bool {
        self.0.cfg.enabled
    }

    pub fn config(&self) -> &AuthConfig {
        &self.0.cfg
    }

    fn require_on(&self) -> Result<(), AppError> {
        if self.enabled() {
            Ok(())
        } else {
            Err(AppError::bad_input(
                "Accounts are off on this server (CODEFLUX_AUTH=off): there is nothing to sign in to.",
            ))
        }
    }

    fn limit(&self, key: &str) -> Result<(), AppError> {
        self.0.limiter.check(key).map_err(|secs| {
            AppError::too_many(
                format!("Too many attempts. Try again in {secs} seconds."),
                secs,
            )
        })
    }

    async fn start_session(&self, user: &UserRow) -> Result<Session, AppError> {
        let token = random_hex(32)?;
        let ttl = self.0.cfg.session_ttl;
        let expires = codeflux_db::now()
            + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::days(30));
        codeflux_db::insert_session(&self.0.db, &sha256_hex(&token), user.id, expires)
            .await
            .map_err(db_error)?;
        if let Err(e) = codeflux_db::delete_expired_sessions(&self.0.db).await {
            tracing::warn!("removing expired sessions: {e}");
        }
        Ok(Session {
            token,
            max_age: ttl,
            account: account_of(user),
        })
    }

    /// Creates an account and signs it in.
    pub async fn sign_up(
        &self,
        email: &str,
        password: &str,
        invite: Option<&str>,
        addr: IpAddr,
    ) -> Result<Session, AppError> {
        self.require_on()?;
        let email = validate::email(email)?;
        validate::new_password(password)?;
        let key = format!("signup:{addr}");
        self.limit(&key)?;
        let invite = invite.map(str::trim).filter(|c| !c.is_empty());
        let first = codeflux_db::count_users(&self.0.db)
            .await
            .map_err(db_error)?
            == 0;
        if !first {
            match self.0.cfg.signup {
                SignUpPolicy::Closed => {
                    return Err(AppError::forbidden(
                        "Sign-up is closed on this server. Ask its admin for an account.",
                    ));
                }
                SignUpPolicy::Invite if invite.is_none() => {
                    return Err(AppError::forbidden(
                        "Sign-up needs an invite on this server. Ask its admin for an invite link.",
                    ));
                }
                _ => {}
            }
        }
        self.0.limiter.fail(&key, SIGNUP_THRESHOLD);
        let password = password.to_owned();
        let hash = blocking(move || hash_password(&password)).await??;
        let invite_hash = invite.map(sha256_hex);
        let outcome = codeflux_db::sign_up(
            &self.0.db,
            &email,
            &hash,
            self.0.cfg.signup,
            invite_hash.as_deref(),
        )
        .await
        .map_err(db_error)?;
        let user = match outcome {
            SignUp::Created { user, first } => {
                if first {
                    tracing::info!(email = %user.email, "the first account: admin");
                }
                user
            }
            SignUp::EmailTaken => {
                return Err(AppError::conflict(
                    "An account with this email exists. Sign in instead.",
                ));
            }
            SignUp::InviteRequired => {
                return Err(AppError::forbidden(
                    "Sign-up needs an invite on this server. Ask its admin for an invite link.",
                ));
            }
            SignUp::InviteInvalid => {
                return Err(AppError::forbidden(
                    "This invite is not valid: it was used already, has expired or was withdrawn.",
                ));
            }
            SignUp::Closed => {
                return Err(AppError::forbidden(
                    "Sign-up is closed on this server. Ask its admin for an account.",
                ));
            }
        };
        self.start_session(&user).await
    }

    /// Signs in. The error never says whether the email has an account; repeated failures
    /// lock the account and the address out for a while (429).
    pub async fn sign_in(
        &self,
        email: &str,
        password: &str,
        addr: IpAddr,
    ) -> Result<Session, AppError> {
        self.require_on()?;
        let email = email.trim().to_lowercase();
        let (acct_key, addr_key) = (format!("acct:{email}"), format!("addr:{addr}"));
        self.limit(&acct_key)?;
        self.limit(&addr_key)?;
        let user = codeflux_db::find_user_by_email(&self.0.db, &email)
            .await
            .map_err(db_error)?;
        let (pw, hash) = (
            password.to_owned(),
            user.as_ref()
                .map_or_else(|| dummy_hash().to_owned(), |u| u.password_hash.clone()),
        );
        let ok = blocking(move || verify_password(&pw, &hash)).await? && user.is_some();
        match user {
            Some(u) if ok => {
                self.0.limiter.succeed(&acct_key);
                self.start_session(&u).await
            }
            _ => {
                let a = self.0.limiter.fail(&acct_key, ACCOUNT_THRESHOLD);
                let b = self.0.limiter.fail(&addr_key, ADDRESS_THRESHOLD);
                match a.max(b) {
                    Some(secs) => Err(AppError::too_many(
                        format!("Too many attempts. Try again in {secs} seconds."),
                        secs,
                    )),
                    None => Err(AppError::unauthorized(WRONG_CREDENTIALS)),
                }
            }
        }
    }

    /// Ends the session whose cookie carries `token`.
    pub async fn sign_out(&self, token: &str) -> Result<(), AppError> {
        codeflux_db::delete_session(&self.0.db, &sha256_hex(token))
            .await
            .map_err(db_error)?;
        Ok(())
    }

    /// Ends every session of the account (API tokens stay).
    pub async fn sign_out_everywhere(&self, actor: &Actor) -> Result<u64, AppError> {
        let id = self.user(actor)?;
        codeflux_db::delete_user_sessions(&self.0.db, id)
            .await
            .map_err(db_error)
    }

    /// The actor of a session cookie's token, if the session is valid.
    pub async fn from_session(&self, token: &str) -> Result<Option<Actor>, AppError> {
        if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        Ok(codeflux_db::session_user(&self.0.db, &sha256_hex(token))
            .await
            .map_err(db_error)?
            .map(|u| Actor::from_row(&u)))
    }

    /// The actor of a bearer token, if it is a valid API token.
    pub async fn from_bearer(&self, token: &str) -> Result<Option<Actor>, AppError> {
        if !token.starts_with("cf_") || token.len() > 200 {
            return Ok(None);
        }
        Ok(codeflux_db::token_user(&self.0.db, &sha256_hex(token))
            .await
            .map_err(db_error)?
            .map(|u| Actor::from_row(&u)))
    }

    /// Who the actor is, as the page shows it.
    pub async fn me(&self, actor: &Actor) -> Result<Account, AppError> {
        match actor {
            Actor::Local => Ok(Account {
                auth: false,
                id: None,
                email: None,
                is_admin: true,
                role: "local".into(),
                created_at: None,
            }),
            Actor::User { id, .. } => codeflux_db::find_user(&self.0.db, *id)
                .await
                .map_err(db_error)?
                .map(|u| account_of(&u))
                .ok_or_else(|| AppError::unauthorized("Sign in again: this account is gone.")),
        }
    }

    fn user(&self, actor: &Actor) -> Result<Uuid, AppError> {
        actor.user_id().ok_or_else(|| {
            AppError::bad_input("Accounts are off on this server (CODEFLUX_AUTH=off).")
        })
    }

    fn admin(&self, actor: &Actor) -> Result<Uuid, AppError> {
        match actor {
            Actor::User {
                id, is_admin: true, ..
            } => Ok(*id),
            Actor::User { .. } => Err(AppError::forbidden("Only an admin can do this.")),
            Actor::Local => Err(AppError::bad_input(
                "Accounts are off on this server (CODEFLUX_AUTH=off).",
            )),
        }
    }

    /// A new API token for the actor; its secret is in the answer and nowhere else.
    pub async fn create_token(&self, actor: &Actor, name: &str) -> Result<NewApiToken, AppError> {
        let user = self.user(actor)?;
        let name = validate::token_name(name)?;
        let token = format!("cf_{}", random_hex(32)?);
        let prefix: String = token.chars().take(10).collect();
        let t = codeflux_db::insert_token(&self.0.db, user, &name, &prefix, &sha256_hex(&token))
            .await
            .map_err(db_error)?;
        Ok(NewApiToken {
            id: t.id,
            name: t.name,
            token,
            created_at: t.created_at,
        })
    }

    pub async fn list_tokens(&self, actor: &Actor) -> Result<Vec<ApiToken>, AppError> {
        let user = self.user(actor)?;
        codeflux_db::list_tokens(&self.0.db, user)
            .await
            .map_err(db_error)
    }

    pub async fn revoke_token(&self, actor: &Actor, id: &str) -> Result<(), AppError> {
        let user = self.user(actor)?;
        let id = validate::id("token id", id)?;
        if codeflux_db::delete_token(&self.0.db, user, id)
            .await
            .map_err(db_error)?
        {
            Ok(())
        } else {
            Err(AppError::not_found("There is no such token."))
        }
    }

    /// A single-use invite (admins only), with its sign-up link.
    pub async fn create_invite(
        &self,
        actor: &Actor,
        email: Option<&str>,
    ) -> Result<Invite, AppError> {
        let admin = self.admin(actor)?;
        let email = match email.map(str::trim).filter(|e| !e.is_empty()) {
            Some(e) => Some(validate::email(e)?),
            None => None,
        };
        let code = random_hex(16)?;
        let expires = codeflux_db::now()
            + chrono::Duration::from_std(self.0.cfg.invite_ttl)
                .unwrap_or(chrono::Duration::days(7));
        let mut invite =
            codeflux_db::insert_invite(&self.0.db, admin, &sha256_hex(&code), email, expires)
                .await
                .map_err(db_error)?;
        invite.url = Some(format!(
            "{}/sign-up?invite={code}",
            self.0.cfg.public_url.trim_end_matches('/')
        ));
        invite.code = Some(code);
        Ok(invite)
    }

    pub async fn list_invites(&self, actor: &Actor) -> Result<Vec<Invite>, AppError> {
        self.admin(actor)?;
        codeflux_db::list_invites(&self.0.db)
            .await
            .map_err(db_error)
    }

    pub async fn revoke_invite(&self, actor: &Actor, id: &str) -> Result<(), AppError> {
        self.admin(actor)?;
        let id = validate::id("invite id", id)?;
        if codeflux_db::delete_invite(&self.0.db, id)
            .await
            .map_err(db_error)?
        {
            Ok(())
        } else {
            Err(AppError::not_found("There is no such invite."))
        }
    }
}
