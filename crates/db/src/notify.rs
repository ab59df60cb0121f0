//! Notifications between processes on one database: PostgreSQL's LISTEN/NOTIFY. On SQLite
//! (one process by design) there is nobody to tell, and these do nothing.

use sea_orm::sqlx::postgres::PgListener;
use sea_orm::{ConnectionTrait, DbBackend, Statement};

use crate::{Db, DbError};

/// The channel on which a stored run event is announced (`<node> <project> <seq>`).
pub const EVENTS_CHANNEL: &str = "codeflux_events";

/// Tells every listening process (NOTIFY, delivered when the statement's transaction commits).
pub async fn notify(db: &Db, channel: &str, payload: &str) -> Result<(), DbError> {
    if db.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT pg_notify($1, $2)",
        [channel.into(), payload.into()],
    ))
    .await?;
    Ok(())
}

/// A connection listening on one channel (it reconnects by itself after a drop; what was
/// announced meanwhile is lost, so readers must be able to catch up from the tables).
pub struct Listener(PgListener);

impl Listener {
    /// The next announcement's payload.
    pub async fn recv(&mut self) -> Result<String, DbError> {
        self.0
            .recv()
            .await
            .map(|n| n.payload().to_owned())
            .map_err(|e| DbError::Unreachable(format!("listening for notifications: {e}")))
    }
}

/// Listens on `channel`; None on SQLite.
pub async fn listen(db: &Db, channel: &str) -> Result<Option<Listener>, DbError> {
    if db.get_database_backend() != DbBackend::Postgres {
        return Ok(None);
    }
    let mut l = PgListener::connect_with(db.get_postgres_connection_pool())
        .await
        .map_err(|e| DbError::Unreachable(format!("opening a listening connection: {e}")))?;
    l.listen(channel)
        .await
        .map_err(|e| DbError::Unreachable(format!("LISTEN {channel}: {e}")))?;
    Ok(Some(Listener(l)))
}
