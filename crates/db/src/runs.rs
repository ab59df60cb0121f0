//! Runs and their events.

use chrono::{DateTime, Utc};
use codeflux_protocol::{Fragment, Run, RunEvent, RunStatus, StoredEvent};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Set, SqlErr, Statement,
};
use uuid::Uuid;

use crate::entity::{fragment, message, run, run_event};
use crate::{Db, DbError, new_id, now};

fn run_dto(m: run::Model) -> Result<Run, DbError> {
    let status = RunStatus::parse(&m.status)
        .ok_or_else(|| DbError::Corrupt(format!("run {}: status {}", m.id, m.status)))?;
    Ok(Run {
        id: m.id,
        project_id: m.project_id,
        message_id: m.message_id,
        status,
        error: m.error,
        created_at: m.created_at,
        started_at: m.started_at,
        finished_at: m.finished_at,
        model: m.model,
    })
}

/// A new queued run for the USER message `message_id`, with the model asked for (None: the
/// server's default).
pub async fn insert_run(
    db: &Db,
    project_id: Uuid,
    message_id: Uuid,
    model: Option<String>,
) -> Result<Run, DbError> {
    let m = run::ActiveModel {
        id: Set(new_id()),
        project_id: Set(project_id),
        message_id: Set(message_id),
        status: Set(RunStatus::Queued.as_str().to_owned()),
        error: Set(None),
        usage: Set(None),
        created_at: Set(now()),
        started_at: Set(None),
        finished_at: Set(None),
        model: Set(model),
    }
    .insert(db)
    .await?;
    run_dto(m)
}

pub async fn find_run(db: &Db, id: Uuid) -> Result<Option<Run>, DbError> {
    run::Entity::find_by_id(id)
        .one(db)
        .await?
        .map(run_dto)
        .transpose()
}

/// Marks a queued run as started, in one conditional update: false when it is no longer
/// queued (a cancel landed first), and then it must not run.
pub async fn mark_running(db: &Db, id: Uuid) -> Result<bool, DbError> {
    move_status(db, id, RunStatus::Queued, RunStatus::Running, None).await
}

/// Ends a run that is still queued (cancelled before it started), in one conditional update:
/// false when it has started meanwhile (then it is stopped like a running one).
pub async fn cancel_queued(db: &Db, id: Uuid) -> Result<bool, DbError> {
    move_status(
        db,
        id,
        RunStatus::Queued,
        RunStatus::Cancelled,
        Some("cancelled"),
    )
    .await
}

/// Fails a run that is still queued (it cannot run here), in one conditional update: false when
/// a node started it meanwhile.
pub async fn fail_queued(db: &Db, id: Uuid, reason: &str) -> Result<bool, DbError> {
    move_status(db, id, RunStatus::Queued, RunStatus::Failed, Some(reason)).await
}

async fn move_status(
    db: &Db,
    id: Uuid,
    from: RunStatus,
    to: RunStatus,
    error: Option<&str>,
) -> Result<bool, DbError> {
    let mut update = run::Entity::update_many()
        .col_expr(run::Column::Status, Expr::value(to.as_str()))
        .filter(run::Column::Id.eq(id))
        .filter(run::Column::Status.eq(from.as_str()));
    update = if to == RunStatus::Running {
        update.col_expr(run::Column::StartedAt, Expr::value(Some(now())))
    } else {
        update
            .col_expr(run::Column::FinishedAt, Expr::value(Some(now())))
            .col_expr(run::Column::Error, Expr::value(error.map(str::to_owned)))
    };
    Ok(update.exec(db).await?.rows_affected == 1)
}

/// Marks a run as ended with `status`.
pub async fn mark_ended(
    db: &Db,
    id: Uuid,
    status: RunStatus,
    error: Option<String>,
    usage: Option<serde_json::Value>,
) -> Result<(), DbError> {
    run::ActiveModel {
        id: Set(id),
        status: Set(status.as_str().to_owned()),
        error: Set(error),
        usage: Set(usage),
        finished_at: Set(Some(now())),
        ..Default::default()
    }
    .update(db)
    .await?;
    Ok(())
}

/// The oldest queued run of a project.
pub async fn next_queued_run(db: &Db, project_id: Uuid) -> Result<Option<Run>, DbError> {
    run::Entity::find()
        .filter(run::Column::ProjectId.eq(project_id))
        .filter(run::Column::Status.eq(RunStatus::Queued.as_str()))
        .order_by_asc(run::Column::CreatedAt)
        .order_by_asc(run::Column::Id)
        .one(db)
        .await?
        .map(run_dto)
        .transpose()
}

/// Runs in a status, oldest first (all projects).
pub async fn runs_with_status(db: &Db, status: RunStatus) -> Result<Vec<Run>, DbError> {
    run::Entity::find()
        .filter(run::Column::Status.eq(status.as_str()))
        .order_by_asc(run::Column::CreatedAt)
        .all(db)
        .await?
        .into_iter()
        .map(run_dto)
        .collect()
}

/// A project's queued and running runs, oldest first.
pub async fn active_runs(db: &Db, project_id: Uuid) -> Result<Vec<Run>, DbError> {
    run::Entity::find()
        .filter(run::Column::ProjectId.eq(project_id))
        .filter(
            run::Column::Status.is_in([RunStatus::Queued.as_str(), RunStatus::Running.as_str()]),
        )
        .order_by_asc(run::Column::CreatedAt)
        .all(db)
        .await?
        .into_iter()
        .map(run_dto)
        .collect()
}

/// How many runs are queued across every project.
pub async fn count_queued(db: &Db) -> Result<u64, DbError> {
    Ok(run::Entity::find()
        .filter(run::Column::Status.eq(RunStatus::Queued.as_str()))
        .count(db)
        .await?)
}

/// The newest fragment of a project, if any run has produced one.
pub async fn latest_fragment(db: &Db, project_id: Uuid) -> Result<Option<Fragment>, DbError> {
    let found = fragment::Entity::find()
        .inner_join(message::Entity)
        .filter(message::Column::ProjectId.eq(project_id))
        .order_by_desc(fragment::Column::CreatedAt)
        .order_by_desc(fragment::Column::Id)
        .one(db)
        .await?;
    found.map(crate::repo::fragment_dto).transpose()
}

/// The highest event number of a project (0 when it has none).
pub async fn max_seq(db: &Db, project_id: Uuid) -> Result<i64, DbError> {
    let row: Option<Option<i64>> = run_event::Entity::find()
        .select_only()
        .column_as(run_event::Column::Seq.max(), "max_seq")
        .filter(run_event::Column::ProjectId.eq(project_id))
        .into_tuple()
        .one(db)
        .await?;
    Ok(row.flatten().unwrap_or(0))
}

/// How many runs there are in each status (statuses without runs are left out).
pub async fn run_counts(db: &Db) -> Result<Vec<(String, u64)>, DbError> {
    let rows: Vec<(String, i64)> = run::Entity::find()
        .select_only()
        .column(run::Column::Status)
        .column_as(run::Column::Id.count(), "n")
        .group_by(run::Column::Status)
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(s, n)| (s, u64::try_from(n).unwrap_or(0)))
        .collect())
}

/// Stores one event under the project's next number, allocated by the database in the insert
/// itself (the project's highest number + 1): numbers are gap-free per project whichever
/// process writes. Two writers that compute the same number collide on the primary key; the
/// loser computes again. With a `fence`, the event is stored only while that lease holds the
/// run (`Err(Fenced)` otherwise): an execution that lost its run writes no more events.
pub async fn append_event(
    db: &Db,
    project_id: Uuid,
    run_id: Uuid,
    at: DateTime<Utc>,
    event: &RunEvent,
    fence: Option<crate::cluster::Fence>,
) -> Result<i64, DbError> {
    let payload =
        serde_json::to_value(event).map_err(|e| DbError::Corrupt(format!("event payload: {e}")))?;
    let backend = db.get_database_backend();
    let (fence_run, fence_gen) = fence.map_or((run_id, -1), |f| (f.run_id, f.generation));
    let values: Vec<sea_orm::Value> = vec![
        project_id.into(),
        run_id.into(),
        event.kind().into(),
        payload.into(),
        at.into(),
        fence.is_some().into(),
        fence_run.into(),
        fence_gen.into(),
    ];
    // SQLite reads `$n` as `?n` (numbered, so the project id is bound once).
    let sql = "INSERT INTO run_events (project_id, seq, run_id, type, payload, created_at) \
         SELECT * FROM (SELECT $1 AS project_id, COALESCE(MAX(seq), 0) + 1 AS seq, $2 AS run_id, \
         $3 AS type, $4 AS payload, $5 AS created_at FROM run_events WHERE project_id = $1) AS next \
         WHERE NOT $6 OR EXISTS (SELECT 1 FROM runs WHERE id = $7 AND lease_gen = $8) \
         RETURNING seq";
    let sql = if backend == DbBackend::Postgres {
        sql.to_owned()
    } else {
        sql.replace('$', "?")
    };
    let mut attempt = 0u32;
    loop {
        let stmt = Statement::from_sql_and_values(backend, &sql, values.clone());
        match db.query_one_raw(stmt).await {
            Ok(Some(row)) => return Ok(row.try_get::<i64>("", "seq")?),
            Ok(None) if fence.is_some() => return Err(DbError::Fenced),
            Ok(None) => return Err(DbError::Corrupt("the insert returned no number".into())),
            Err(e)
                if attempt < 50
                    && matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) =>
            {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(u64::from(attempt.min(10))))
                    .await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// A project's events with a number above `after`, in order, at most `limit`.
pub async fn events_after(
    db: &Db,
    project_id: Uuid,
    after: i64,
    limit: u64,
) -> Result<Vec<StoredEvent>, DbError> {
    run_event::Entity::find()
        .filter(run_event::Column::ProjectId.eq(project_id))
        .filter(run_event::Column::Seq.gt(after))
        .order_by_asc(run_event::Column::Seq)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(event_dto)
        .collect()
}

/// The number just before the first event of the given runs (where a live view resumes).
pub async fn seq_before_runs(
    db: &Db,
    project_id: Uuid,
    runs: &[Uuid],
) -> Result<Option<i64>, DbError> {
    if runs.is_empty() {
        return Ok(None);
    }
    let row: Option<Option<i64>> = run_event::Entity::find()
        .select_only()
        .column_as(run_event::Column::Seq.min(), "min_seq")
        .filter(run_event::Column::ProjectId.eq(project_id))
        .filter(run_event::Column::RunId.is_in(runs.iter().copied()))
        .into_tuple()
        .one(db)
        .await?;
    Ok(row.flatten().map(|s| s - 1))
}

/// One fragment by id.
pub async fn find_fragment(db: &Db, id: Uuid) -> Result<Option<Fragment>, DbError> {
    fragment::Entity::find_by_id(id)
        .one(db)
        .await?
        .map(crate::repo::fragment_dto)
        .transpose()
}

/// The project a fragment belongs to (through its message).
pub async fn fragment_project(db: &Db, fragment_id: Uuid) -> Result<Option<Uuid>, DbError> {
    let row: Option<Uuid> = fragment::Entity::find_by_id(fragment_id)
        .inner_join(message::Entity)
        .select_only()
        .column(message::Column::ProjectId)
        .into_tuple()
        .one(db)
        .await?;
    Ok(row)
}

/// Every event of the given runs of a project, in order (at most `limit`).
pub async fn events_of_runs(
    db: &Db,
    project_id: Uuid,
    runs: &[Uuid],
    limit: u64,
) -> Result<Vec<StoredEvent>, DbError> {
    if runs.is_empty() {
        return Ok(Vec::new());
    }
    run_event::Entity::find()
        .filter(run_event::Column::ProjectId.eq(project_id))
        .filter(run_event::Column::RunId.is_in(runs.iter().copied()))
        .order_by_asc(run_event::Column::Seq)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(event_dto)
        .collect()
}

fn event_dto(m: run_event::Model) -> Result<StoredEvent, DbError> {
    let event: RunEvent = serde_json::from_value(m.payload)
        .map_err(|e| DbError::Corrupt(format!("event {}/{}: {e}", m.project_id, m.seq)))?;
    Ok(StoredEvent {
        seq: m.seq,
        project_id: m.project_id,
        run_id: m.run_id,
        at: m.created_at,
        event,
    })
}
