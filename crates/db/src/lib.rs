//! Persistence for CodeFlux: SeaORM entities and small repository functions that speak in
//! `codeflux_protocol` types. Works on SQLite (the default, one file) and PostgreSQL.

mod accounts;
pub mod cluster;
pub mod entity;
pub mod notify;
mod repo;
mod runs;

use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend};

pub use accounts::*;
pub use migration::default_sqlite_url;
pub use repo::*;
pub use runs::*;
pub use sea_orm::DatabaseConnection as Db;

/// A failure of the data layer.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database could not be reached (connection refused, pool timed out, ...).
    #[error("database unreachable: {0}")]
    Unreachable(String),
    /// Any other error reported by the database or the ORM.
    #[error("database error: {0}")]
    Query(sea_orm::DbErr),
    /// A stored value that our code cannot read back (a bug or a hand-edited row).
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    /// The run's lease belongs to another execution now (this node lost it: it was taken over
    /// after it stopped renewing): nothing was written.
    #[error("the run's lease was taken over by another node")]
    Fenced,
}

impl From<sea_orm::DbErr> for DbError {
    fn from(err: sea_orm::DbErr) -> Self {
        match err {
            sea_orm::DbErr::Conn(e) => DbError::Unreachable(e.to_string()),
            sea_orm::DbErr::ConnectionAcquire(e) => DbError::Unreachable(e.to_string()),
            other => DbError::Query(other),
        }
    }
}

/// Connects to `url` (`sqlite://...` or `postgres://...`). Does not migrate.
pub async fn connect(url: &str) -> Result<Db, DbError> {
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.max_connections(16)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(10))
        .sqlx_logging(false);
    let db = Database::connect(opts).await?;
    if db.get_database_backend() == DbBackend::Sqlite {
        // WAL lets the page read while a run writes; the setting is stored in the file.
        db.execute_unprepared("PRAGMA journal_mode=WAL").await?;
        db.execute_unprepared("PRAGMA foreign_keys=ON").await?;
    }
    Ok(db)
}

/// Applies every pending migration.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbError> {
    Migrator::up(db, None).await?;
    Ok(())
}

/// Connects and migrates: what the server does at start.
pub async fn connect_and_migrate(url: &str) -> Result<Db, DbError> {
    let db = connect(url).await?;
    migrate(&db).await?;
    Ok(db)
}

/// Answers whether the database responds to a trivial query.
pub async fn ping(db: &DatabaseConnection) -> Result<(), DbError> {
    db.ping().await?;
    Ok(())
}

/// A URL fit for logs: the password, if any, replaced.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let creds = &url[scheme_end + 3..at];
            match creds.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &creds[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://me:s3cret@db:5432/x"),
            "postgres://me:***@db:5432/x"
        );
        assert_eq!(redact_url("postgres://me@db/x"), "postgres://me@db/x");
        assert_eq!(redact_url("sqlite://data/a.db"), "sqlite://data/a.db");
    }
}
