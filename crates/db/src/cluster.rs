//! Several nodes on one database: who is alive (`nodes`, heartbeats), which node executes which
//! run (a lease with a generation, renewed by its worker, claimed with `FOR UPDATE SKIP LOCKED`
//! on PostgreSQL), what a resumed run continues from (`run_checkpoints`), and which node holds
//! a project's live sandbox (`sandbox_homes`).
//!
//! Every write a run's execution makes is fenced by its lease generation: an execution that
//! lost its lease (frozen, cut off, presumed dead and taken over) writes nothing more.
//! Lease and heartbeat times are Unix milliseconds of the nodes' clocks (keep them in sync:
//! NTP); SQL is written once with `$n` placeholders (SQLite reads them as `?n`).

use codeflux_protocol::{Message, MessageKind, Role, Run, RunStatus};
use sea_orm::{ConnectionTrait, DbBackend, QueryResult, SqlErr, Statement, TransactionTrait};
use uuid::Uuid;

use crate::{Db, DbError, MessageMeta, NewFragment, find_run, now};

/// One execution's hold on a run: writes carry it and are refused once it is stale.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fence {
    pub run_id: Uuid,
    pub generation: i64,
}

/// Now as Unix milliseconds.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn stmt(db: &Db, sql: &str, values: Vec<sea_orm::Value>) -> Statement {
    stmt_for(db.get_database_backend(), sql, values)
}

fn stmt_for(backend: DbBackend, sql: &str, values: Vec<sea_orm::Value>) -> Statement {
    let sql = if backend == DbBackend::Postgres {
        sql.to_owned()
    } else {
        sql.replace('$', "?")
    };
    Statement::from_sql_and_values(backend, sql, values)
}

fn is_pg(db: &Db) -> bool {
    db.get_database_backend() == DbBackend::Postgres
}

/// A node of the cluster as the table shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRow {
    pub id: Uuid,
    pub url: Option<String>,
    pub heartbeat_ms: i64,
    pub stopped: bool,
}

/// Announces this node (at start).
pub async fn register_node(db: &Db, id: Uuid, url: Option<&str>) -> Result<(), DbError> {
    db.execute_raw(stmt(
        db,
        "INSERT INTO nodes (id, url, started_at, heartbeat_ms, stopped_at) VALUES ($1, $2, $3, $4, NULL)",
        vec![
            id.into(),
            url.map(str::to_owned).into(),
            now().into(),
            now_ms().into(),
        ],
    ))
    .await?;
    Ok(())
}

/// This node is alive.
pub async fn heartbeat(db: &Db, id: Uuid) -> Result<(), DbError> {
    db.execute_raw(stmt(
        db,
        "UPDATE nodes SET heartbeat_ms = $1 WHERE id = $2",
        vec![now_ms().into(), id.into()],
    ))
    .await?;
    Ok(())
}

/// This node stops (a clean shutdown): its runs' leases end now, so another node resumes them
/// at once instead of after the lease's time.
pub async fn node_stopped(db: &Db, id: Uuid) -> Result<u64, DbError> {
    db.execute_raw(stmt(
        db,
        "UPDATE nodes SET stopped_at = $1 WHERE id = $2",
        vec![now().into(), id.into()],
    ))
    .await?;
    let released = db
        .execute_raw(stmt(
            db,
            "UPDATE runs SET lease_until_ms = 0 WHERE node_id = $1 AND status = 'running'",
            vec![id.into()],
        ))
        .await?;
    Ok(released.rows_affected())
}

/// Every node that ever announced itself, latest heartbeat first; nodes stopped or silent for
/// more than a day are forgotten on the way.
pub async fn nodes(db: &Db) -> Result<Vec<NodeRow>, DbError> {
    db.execute_raw(stmt(
        db,
        "DELETE FROM nodes WHERE heartbeat_ms < $1",
        vec![(now_ms() - 86_400_000).into()],
    ))
    .await?;
    let rows = db
        .query_all_raw(stmt(
            db,
            "SELECT id, url, heartbeat_ms, stopped_at IS NOT NULL AS stopped FROM nodes ORDER BY heartbeat_ms DESC",
            vec![],
        ))
        .await?;
    rows.iter().map(node_row).collect()
}

fn node_row(r: &QueryResult) -> Result<NodeRow, DbError> {
    Ok(NodeRow {
        id: r.try_get("", "id")?,
        url: r.try_get("", "url")?,
        heartbeat_ms: r.try_get("", "heartbeat_ms")?,
        stopped: r.try_get("", "stopped")?,
    })
}

/// A run this node now holds.
#[derive(Clone, Debug)]
pub struct Claim {
    pub run: Run,
    pub fence: Fence,
    /// Some: the run was working on that node, whose lease ran out; this is a resumption.
    pub taken_from: Option<Uuid>,
    /// How many times the run was taken over, this time included.
    pub resumes: i32,
}

/// Claims one run for `node` under a lease until `lease_until_ms`: first a running run whose
/// lease ran out (its node stopped renewing), else the oldest queued run of a project that
/// has no older queued run and no running one. On PostgreSQL the candidate row is locked with
/// `FOR UPDATE SKIP LOCKED`, so nodes claiming at once take different runs; the partial unique
/// index on running runs keeps one running run per project whatever happens.
pub async fn claim_run(db: &Db, node: Uuid, lease_until_ms: i64) -> Result<Option<Claim>, DbError> {
    if let Some(c) = claim_expired(db, node, lease_until_ms).await? {
        return Ok(Some(c));
    }
    claim_queued(db, node, lease_until_ms).await
}

/// A claim's rows, before the run is read back.
type Claimed = (Uuid, i64, Option<Uuid>, i32);

/// Claims run in a transaction on PostgreSQL (the candidate row stays locked until the update
/// commits), directly on SQLite (writes are serialized there; a read-then-write transaction
/// would fail with SQLITE_BUSY_SNAPSHOT when another write came in between, and every update
/// below is conditional anyway).
macro_rules! claim_with {
    ($db:expr, $inner:ident, $($arg:expr),*) => {{
        let db: &Db = $db;
        if is_pg(db) {
            let txn = db.begin().await?;
            let got = $inner(&txn, db.get_database_backend(), true, $($arg),*).await?;
            if got.is_some() {
                txn.commit().await?;
            }
            got
        } else {
            $inner(db, db.get_database_backend(), false, $($arg),*).await?
        }
    }};
}

async fn claim_expired(db: &Db, node: Uuid, until: i64) -> Result<Option<Claim>, DbError> {
    let got = claim_with!(db, expired_in, node, until);
    claimed(db, got).await
}

async fn expired_in(
    conn: &impl ConnectionTrait,
    backend: DbBackend,
    pg: bool,
    node: Uuid,
    until: i64,
) -> Result<Option<Claimed>, DbError> {
    let lock = if pg { " FOR UPDATE SKIP LOCKED" } else { "" };
    let row = conn
        .query_one_raw(stmt_for(
            backend,
            &format!(
                "SELECT id, lease_gen, node_id FROM runs WHERE status = 'running' \
                 AND (lease_until_ms IS NULL OR lease_until_ms < $1) ORDER BY created_at LIMIT 1{lock}"
            ),
            vec![now_ms().into()],
        ))
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let id: Uuid = row.try_get("", "id")?;
    let generation: i64 = row.try_get("", "lease_gen")?;
    let from: Option<Uuid> = row.try_get("", "node_id")?;
    let done = conn
        .execute_raw(stmt_for(
            backend,
            // The lease is checked again (on SQLite nothing locked the row since the SELECT); a
            // lease given back by a clean stop (0) is not counted as a takeover.
            "UPDATE runs SET node_id = $1, lease_gen = lease_gen + 1, lease_until_ms = $2, \
             resumes = resumes + CASE WHEN lease_until_ms = 0 THEN 0 ELSE 1 END \
             WHERE id = $3 AND lease_gen = $4 AND status = 'running' \
             AND (lease_until_ms IS NULL OR lease_until_ms < $5)",
            vec![
                node.into(),
                until.into(),
                id.into(),
                generation.into(),
                now_ms().into(),
            ],
        ))
        .await?;
    if done.rows_affected() != 1 {
        return Ok(None);
    }
    let row = conn
        .query_one_raw(stmt_for(
            backend,
            "SELECT resumes FROM runs WHERE id = $1",
            vec![id.into()],
        ))
        .await?;
    let resumes = row
        .map(|r| r.try_get::<i32>("", "resumes"))
        .transpose()?
        .unwrap_or(0);
    // A run left without a node (older versions) is resumed all the same.
    Ok(Some((
        id,
        generation + 1,
        Some(from.unwrap_or_else(Uuid::nil)),
        resumes,
    )))
}

async fn claim_queued(db: &Db, node: Uuid, until: i64) -> Result<Option<Claim>, DbError> {
    let got = claim_with!(db, queued_in, node, until);
    claimed(db, got).await
}

async fn queued_in(
    conn: &impl ConnectionTrait,
    backend: DbBackend,
    pg: bool,
    node: Uuid,
    until: i64,
) -> Result<Option<Claimed>, DbError> {
    let lock = if pg {
        " FOR UPDATE OF r SKIP LOCKED"
    } else {
        ""
    };
    let row = conn
        .query_one_raw(stmt_for(
            backend,
            &format!(
                "SELECT r.id, r.lease_gen FROM runs r WHERE r.status = 'queued' AND NOT EXISTS \
                 (SELECT 1 FROM runs o WHERE o.project_id = r.project_id AND (o.status = 'running' \
                 OR (o.status = 'queued' AND (o.created_at < r.created_at \
                 OR (o.created_at = r.created_at AND o.id < r.id))))) \
                 ORDER BY r.created_at LIMIT 1{lock}"
            ),
            vec![],
        ))
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let id: Uuid = row.try_get("", "id")?;
    let generation: i64 = row.try_get("", "lease_gen")?;
    let done = conn
        .execute_raw(stmt_for(
            backend,
            "UPDATE runs SET status = 'running', started_at = $1, node_id = $2, \
             lease_gen = lease_gen + 1, lease_until_ms = $3 WHERE id = $4 AND status = 'queued'",
            vec![now().into(), node.into(), until.into(), id.into()],
        ))
        .await;
    match done {
        Ok(d) if d.rows_affected() == 1 => Ok(Some((id, generation + 1, None, 0))),
        Ok(_) => Ok(None),
        // Another node started a run of this project meanwhile (one running run per
        // project).
        Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

async fn claimed(db: &Db, got: Option<Claimed>) -> Result<Option<Claim>, DbError> {
    let Some((id, generation, taken_from, resumes)) = got else {
        return Ok(None);
    };
    let Some(run) = find_run(db, id).await? else {
        return Ok(None);
    };
    Ok(Some(Claim {
        run,
        fence: Fence {
            run_id: id,
            generation,
        },
        taken_from,
        resumes,
    }))
}

/// What renewing a lease found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lease {
    /// Still ours; `cancel`: someone asked (on any node) to stop the run.
    Held { cancel: bool },
    /// Another execution holds the run now, or it ended: stop working on it.
    Lost,
}

/// Extends the lease to `until_ms` if it is still ours.
pub async fn renew_lease(db: &Db, fence: Fence, until_ms: i64) -> Result<Lease, DbError> {
    let done = db
        .execute_raw(stmt(
            db,
            "UPDATE runs SET lease_until_ms = $1 WHERE id = $2 AND lease_gen = $3 AND status = 'running'",
            vec![until_ms.into(), fence.run_id.into(), fence.generation.into()],
        ))
        .await?;
    if done.rows_affected() != 1 {
        return Ok(Lease::Lost);
    }
    let row = db
        .query_one_raw(stmt(
            db,
            "SELECT cancel_requested FROM runs WHERE id = $1",
            vec![fence.run_id.into()],
        ))
        .await?;
    let cancel = row
        .map(|r| r.try_get::<bool>("", "cancel_requested"))
        .transpose()?
        .unwrap_or(false);
    Ok(Lease::Held { cancel })
}

/// Asks whichever node runs `run_id` to stop it (it sees this when it renews its lease).
pub async fn request_cancel(db: &Db, run_id: Uuid) -> Result<bool, DbError> {
    let done = db
        .execute_raw(stmt(
            db,
            "UPDATE runs SET cancel_requested = TRUE WHERE id = $1 AND status = 'running'",
            vec![run_id.into()],
        ))
        .await?;
    Ok(done.rows_affected() == 1)
}

/// The node a run is executing on, with its lease generation (None: not running).
pub async fn run_lease(db: &Db, run_id: Uuid) -> Result<Option<(Option<Uuid>, i64)>, DbError> {
    let row = db
        .query_one_raw(stmt(
            db,
            "SELECT node_id, lease_gen FROM runs WHERE id = $1 AND status = 'running'",
            vec![run_id.into()],
        ))
        .await?;
    row.map(|r| Ok((r.try_get("", "node_id")?, r.try_get("", "lease_gen")?)))
        .transpose()
}

/// Inside `txn`, a write first: it takes the run's row lock (PostgreSQL) or the write lock
/// (SQLite) and tells whether the lease is still `fence`'s (`Fenced` otherwise).
async fn hold_fence(
    db: &Db,
    txn: &sea_orm::DatabaseTransaction,
    fence: Fence,
) -> Result<(), DbError> {
    let held = txn
        .execute_raw(stmt(
            db,
            "UPDATE runs SET lease_gen = lease_gen WHERE id = $1 AND lease_gen = $2 AND status = 'running'",
            vec![fence.run_id.into(), fence.generation.into()],
        ))
        .await?;
    if held.rows_affected() != 1 {
        return Err(DbError::Fenced);
    }
    Ok(())
}

/// What a run stored to be resumed from.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    pub step: i32,
    pub state: serde_json::Value,
    pub files: serde_json::Value,
}

/// Stores the run's checkpoint (replacing the previous one) if the lease is still `fence`'s.
pub async fn save_checkpoint(db: &Db, fence: Fence, cp: &Checkpoint) -> Result<(), DbError> {
    let txn = db.begin().await?;
    hold_fence(db, &txn, fence).await?;
    txn.execute_raw(stmt(
        db,
        "DELETE FROM run_checkpoints WHERE run_id = $1",
        vec![fence.run_id.into()],
    ))
    .await?;
    txn.execute_raw(stmt(
        db,
        "INSERT INTO run_checkpoints (run_id, lease_gen, step, state, files, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
        vec![
            fence.run_id.into(),
            fence.generation.into(),
            cp.step.into(),
            cp.state.clone().into(),
            cp.files.clone().into(),
            now().into(),
        ],
    ))
    .await?;
    txn.commit().await?;
    Ok(())
}

/// Replaces the checkpoint's state and step, keeping its files (they did not change since),
/// if the lease is still `fence`'s. False: there is no checkpoint yet (store a whole one).
pub async fn save_checkpoint_state(
    db: &Db,
    fence: Fence,
    step: i32,
    state: &serde_json::Value,
) -> Result<bool, DbError> {
    let txn = db.begin().await?;
    hold_fence(db, &txn, fence).await?;
    let done = txn
        .execute_raw(stmt(
            db,
            "UPDATE run_checkpoints SET lease_gen = $1, step = $2, state = $3, created_at = $4 \
             WHERE run_id = $5",
            vec![
                fence.generation.into(),
                step.into(),
                state.clone().into(),
                now().into(),
                fence.run_id.into(),
            ],
        ))
        .await?;
    txn.commit().await?;
    Ok(done.rows_affected() == 1)
}

/// The run's latest checkpoint.
pub async fn load_checkpoint(db: &Db, run_id: Uuid) -> Result<Option<Checkpoint>, DbError> {
    let row = db
        .query_one_raw(stmt(
            db,
            "SELECT step, state, files FROM run_checkpoints WHERE run_id = $1",
            vec![run_id.into()],
        ))
        .await?;
    row.map(|r| {
        Ok(Checkpoint {
            step: r.try_get("", "step")?,
            state: r.try_get("", "state")?,
            files: r.try_get("", "files")?,
        })
    })
    .transpose()
}

/// The message a run ends with.
#[derive(Clone, Debug)]
pub struct EndMessage {
    pub content: String,
    pub kind: MessageKind,
    /// A version (RESULT messages of finished and unfinished runs).
    pub fragment: Option<NewFragment>,
    pub meta: MessageMeta,
}

/// Ends a run, in one transaction fenced by the lease: its status, error and usage, and the
/// ASSISTANT message it ends with; its checkpoint goes. `Err(Fenced)`: another execution holds
/// the run, nothing was written.
pub async fn end_run(
    db: &Db,
    fence: Fence,
    status: RunStatus,
    error: Option<String>,
    usage: Option<serde_json::Value>,
    message: Option<(Uuid, EndMessage)>,
) -> Result<Option<Message>, DbError> {
    let txn = db.begin().await?;
    let done = txn
        .execute_raw(stmt(
            db,
            "UPDATE runs SET status = $1, error = $2, usage = $3, finished_at = $4, lease_until_ms = NULL \
             WHERE id = $5 AND lease_gen = $6 AND status = 'running'",
            vec![
                status.as_str().into(),
                error.into(),
                usage.into(),
                now().into(),
                fence.run_id.into(),
                fence.generation.into(),
            ],
        ))
        .await?;
    if done.rows_affected() != 1 {
        return Err(DbError::Fenced);
    }
    txn.execute_raw(stmt(
        db,
        "DELETE FROM run_checkpoints WHERE run_id = $1",
        vec![fence.run_id.into()],
    ))
    .await?;
    let stored = match message {
        None => None,
        Some((project_id, m)) => Some(match m.fragment {
            Some(f) => {
                crate::repo::insert_result_in(&txn, project_id, m.content, f, m.meta).await?
            }
            None => {
                crate::repo::insert_message_in(
                    &txn,
                    project_id,
                    m.content,
                    Role::Assistant,
                    m.kind,
                    m.meta,
                )
                .await?
            }
        }),
    };
    txn.commit().await?;
    Ok(stored)
}

/// Records that `node` holds the project's live sandbox now.
pub async fn set_sandbox_home(db: &Db, project_id: Uuid, node: Uuid) -> Result<(), DbError> {
    let txn = db.begin().await?;
    txn.execute_raw(stmt(
        db,
        "DELETE FROM sandbox_homes WHERE project_id = $1",
        vec![project_id.into()],
    ))
    .await?;
    txn.execute_raw(stmt(
        db,
        "INSERT INTO sandbox_homes (project_id, node_id, updated_at) VALUES ($1, $2, $3)",
        vec![project_id.into(), node.into(), now().into()],
    ))
    .await?;
    txn.commit().await?;
    Ok(())
}

/// The node that holds the project's live sandbox, as recorded, with what the nodes table says
/// of it (None: no record, or the node is gone from the table).
pub async fn sandbox_home(db: &Db, project_id: Uuid) -> Result<Option<NodeRow>, DbError> {
    let row = db
        .query_one_raw(stmt(
            db,
            "SELECT n.id, n.url, n.heartbeat_ms, n.stopped_at IS NOT NULL AS stopped \
             FROM sandbox_homes h JOIN nodes n ON n.id = h.node_id WHERE h.project_id = $1",
            vec![project_id.into()],
        ))
        .await?;
    row.as_ref().map(node_row).transpose()
}
