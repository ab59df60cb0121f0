//! Repository functions: the only code that builds queries. Callers get protocol types.

use std::collections::BTreeMap;

use chrono::{DateTime, SubsecRound, Utc};
use codeflux_protocol::{
    CheckReport, Fragment, Message, MessageKind, Project, Role, Template, TokenUsage,
};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set,
    TransactionTrait,
};
use uuid::Uuid;

use crate::entity::{fragment, message, project};
use crate::{Db, DbError};

/// Now, at the precision every backend stores (microseconds), so values round-trip exactly.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// A new, time-ordered id (UUID v7).
pub fn new_id() -> Uuid {
    Uuid::now_v7()
}

/// What a new project is made of; the prompt becomes its first USER message.
#[derive(Clone, Debug)]
pub struct NewProject {
    pub name: String,
    pub template: Template,
    pub prompt: String,
    /// The account creating it (None with accounts off).
    pub owner_id: Option<Uuid>,
}

/// How many characters of the first prompt a project keeps as its description.
const DESCRIPTION_CHARS: usize = 280;

/// Creates the project and its first USER message in one transaction.
pub async fn create_project(db: &Db, new: NewProject) -> Result<(Project, Message), DbError> {
    let now = now();
    let project_id = new_id();
    let description = codeflux_protocol::validate::shorten(&new.prompt, DESCRIPTION_CHARS);
    let txn = db.begin().await?;
    let project = project::ActiveModel {
        id: Set(project_id),
        name: Set(new.name),
        template: Set(new.template.as_str().to_owned()),
        description: Set(description),
        created_at: Set(now),
        updated_at: Set(now),
        owner_id: Set(new.owner_id),
    }
    .insert(&txn)
    .await?;
    let message = insert_message_row(
        &txn,
        project_id,
        new.prompt,
        Role::User,
        MessageKind::Result,
        MessageMeta::default(),
        now,
    )
    .await?;
    txn.commit().await?;
    Ok((project_dto(project)?, message_dto(message, None)?))
}

/// Every project (of `owner`, if given), newest first.
pub async fn list_projects(db: &Db, owner: Option<Uuid>) -> Result<Vec<Project>, DbError> {
    let mut q = project::Entity::find();
    if let Some(owner) = owner {
        q = q.filter(project::Column::OwnerId.eq(owner));
    }
    q.order_by_desc(project::Column::CreatedAt)
        .order_by_desc(project::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(project_dto)
        .collect()
}

/// One project, if it exists.
pub async fn find_project(db: &Db, id: Uuid) -> Result<Option<Project>, DbError> {
    project::Entity::find_by_id(id)
        .one(db)
        .await?
        .map(project_dto)
        .transpose()
}

/// Deletes a project with everything of it (messages, fragments, runs, events: the foreign
/// keys cascade). Whether it existed.
pub async fn delete_project(db: &Db, id: Uuid) -> Result<bool, DbError> {
    let r = project::Entity::delete_by_id(id).exec(db).await?;
    Ok(r.rows_affected > 0)
}

/// A project's messages, oldest first, each with its fragment if it has one.
pub async fn list_messages(db: &Db, project_id: Uuid) -> Result<Vec<Message>, DbError> {
    message::Entity::find()
        .filter(message::Column::ProjectId.eq(project_id))
        .find_also_related(fragment::Entity)
        .order_by_asc(message::Column::CreatedAt)
        .order_by_asc(message::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(|(m, f)| message_dto(m, f))
        .collect()
}

/// What an assistant message records of the run that wrote it.
#[derive(Clone, Debug, Default)]
pub struct MessageMeta {
    pub run_id: Option<Uuid>,
    pub model: Option<String>,
    pub usage: Option<TokenUsage>,
    pub checks: Option<CheckReport>,
}

/// Appends a message to a project (and marks the project as updated).
pub async fn insert_message(
    db: &Db,
    project_id: Uuid,
    content: String,
    role: Role,
    kind: MessageKind,
) -> Result<Message, DbError> {
    insert_message_with(db, project_id, content, role, kind, MessageMeta::default()).await
}

/// Appends a message with what it records of its run.
pub async fn insert_message_with(
    db: &Db,
    project_id: Uuid,
    content: String,
    role: Role,
    kind: MessageKind,
    meta: MessageMeta,
) -> Result<Message, DbError> {
    let now = now();
    let txn = db.begin().await?;
    let row = insert_message_row(&txn, project_id, content, role, kind, meta, now).await?;
    touch_project(&txn, project_id, now).await?;
    txn.commit().await?;
    message_dto(row, None)
}

/// What a finished run stores: the assistant's reply and the version it produced.
#[derive(Clone, Debug)]
pub struct NewFragment {
    pub sandbox_url: String,
    pub title: String,
    pub files: BTreeMap<String, String>,
}

/// Appends an ASSISTANT RESULT message with its fragment, in one transaction.
pub async fn insert_result(
    db: &Db,
    project_id: Uuid,
    content: String,
    fragment: NewFragment,
    meta: MessageMeta,
) -> Result<Message, DbError> {
    let txn = db.begin().await?;
    let msg = insert_result_in(&txn, project_id, content, fragment, meta).await?;
    txn.commit().await?;
    Ok(msg)
}

/// An ASSISTANT RESULT message with its fragment, inside the caller's transaction.
pub(crate) async fn insert_result_in(
    conn: &impl ConnectionTrait,
    project_id: Uuid,
    content: String,
    fragment: NewFragment,
    meta: MessageMeta,
) -> Result<Message, DbError> {
    let now = now();
    let files = serde_json::to_value(&fragment.files)
        .map_err(|e| DbError::Corrupt(format!("fragment files: {e}")))?;
    let msg = insert_message_row(
        conn,
        project_id,
        content,
        Role::Assistant,
        MessageKind::Result,
        meta,
        now,
    )
    .await?;
    let frag = fragment::ActiveModel {
        id: Set(new_id()),
        message_id: Set(msg.id),
        sandbox_url: Set(fragment.sandbox_url),
        title: Set(fragment.title),
        files: Set(files),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(conn)
    .await?;
    touch_project(conn, project_id, now).await?;
    message_dto(msg, Some(frag))
}

/// A message without a fragment, inside the caller's transaction.
pub(crate) async fn insert_message_in(
    conn: &impl ConnectionTrait,
    project_id: Uuid,
    content: String,
    role: Role,
    kind: MessageKind,
    meta: MessageMeta,
) -> Result<Message, DbError> {
    let now = now();
    let row = insert_message_row(conn, project_id, content, role, kind, meta, now).await?;
    touch_project(conn, project_id, now).await?;
    message_dto(row, None)
}

async fn insert_message_row(
    conn: &impl ConnectionTrait,
    project_id: Uuid,
    content: String,
    role: Role,
    kind: MessageKind,
    meta: MessageMeta,
    now: DateTime<Utc>,
) -> Result<message::Model, DbError> {
    let json = |what: &str, v: Result<serde_json::Value, serde_json::Error>| {
        v.map_err(|e| DbError::Corrupt(format!("message {what}: {e}")))
    };
    let usage = meta
        .usage
        .map(|u| json("usage", serde_json::to_value(u)))
        .transpose()?;
    let checks = meta
        .checks
        .map(|c| json("checks", serde_json::to_value(c)))
        .transpose()?;
    Ok(message::ActiveModel {
        id: Set(new_id()),
        project_id: Set(project_id),
        content: Set(content),
        role: Set(role.as_str().to_owned()),
        kind: Set(kind.as_str().to_owned()),
        created_at: Set(now),
        updated_at: Set(now),
        run_id: Set(meta.run_id),
        model: Set(meta.model),
        usage: Set(usage),
        checks: Set(checks),
    }
    .insert(conn)
    .await?)
}

async fn touch_project(
    conn: &impl ConnectionTrait,
    project_id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    project::ActiveModel {
        id: Set(project_id),
        updated_at: Set(now),
        ..Default::default()
    }
    .update(conn)
    .await?;
    Ok(())
}

fn project_dto(m: project::Model) -> Result<Project, DbError> {
    let template = m
        .template
        .parse::<Template>()
        .map_err(|e| DbError::Corrupt(format!("project {}: {}", m.id, e.message)))?;
    Ok(Project {
        id: m.id,
        name: m.name,
        template,
        description: m.description,
        created_at: m.created_at,
        updated_at: m.updated_at,
        owner_id: m.owner_id,
    })
}

fn message_dto(m: message::Model, f: Option<fragment::Model>) -> Result<Message, DbError> {
    let role = match m.role.as_str() {
        "USER" => Role::User,
        "ASSISTANT" => Role::Assistant,
        other => return Err(DbError::Corrupt(format!("message {}: role {other}", m.id))),
    };
    let kind = match m.kind.as_str() {
        "RESULT" => MessageKind::Result,
        "ERROR" => MessageKind::Error,
        other => return Err(DbError::Corrupt(format!("message {}: type {other}", m.id))),
    };
    Ok(Message {
        id: m.id,
        project_id: m.project_id,
        content: m.content,
        role,
        kind,
        created_at: m.created_at,
        updated_at: m.updated_at,
        fragment: f.map(fragment_dto).transpose()?,
        run_id: m.run_id,
        model: m.model,
        // A record that does not read (written by a later version) is left out, not fatal.
        usage: m.usage.and_then(|u| serde_json::from_value(u).ok()),
        checks: m.checks.and_then(|c| serde_json::from_value(c).ok()),
        html: None,
    })
}

pub(crate) fn fragment_dto(f: fragment::Model) -> Result<Fragment, DbError> {
    let files: BTreeMap<String, String> = serde_json::from_value(f.files)
        .map_err(|e| DbError::Corrupt(format!("fragment {} files: {e}", f.id)))?;
    Ok(Fragment {
        id: f.id,
        message_id: f.message_id,
        sandbox_url: f.sandbox_url,
        title: f.title,
        files,
        created_at: f.created_at,
        updated_at: f.updated_at,
    })
}
