//! Several nodes on one database (issue 14): the `nodes` table with heartbeats, leases on runs
//! (the node that executes a run, the lease's generation used as a fence on every write, until
//! when it holds, a cancel asked from another node, how often it was taken over), the runs'
//! checkpoints (what a resumed run continues from), where each project's live sandbox is, and
//! one running run per project enforced by the database itself.
//!
//! Times that nodes compare (leases, heartbeats) are Unix milliseconds in BIGINT columns, so
//! SQLite and PostgreSQL compare them the same way.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Nodes {
    Table,
    Id,
    Url,
    StartedAt,
    HeartbeatMs,
    StoppedAt,
}

#[derive(DeriveIden)]
enum Runs {
    Table,
    NodeId,
    LeaseGen,
    LeaseUntilMs,
    CancelRequested,
    Resumes,
}

#[derive(DeriveIden)]
enum RunCheckpoints {
    Table,
    RunId,
    LeaseGen,
    Step,
    State,
    Files,
    CreatedAt,
}

#[derive(DeriveIden)]
enum SandboxHomes {
    Table,
    ProjectId,
    NodeId,
    UpdatedAt,
}

/// At most one running run per project, whichever node runs it.
const ONE_RUNNING: &str = "CREATE UNIQUE INDEX IF NOT EXISTS runs_one_running_per_project ON runs (project_id) WHERE status = 'running'";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Nodes::Table)
                    .col(pk_uuid(Nodes::Id))
                    .col(string_len_null(Nodes::Url, 500))
                    .col(timestamp_with_time_zone(Nodes::StartedAt))
                    .col(big_integer(Nodes::HeartbeatMs))
                    .col(timestamp_with_time_zone_null(Nodes::StoppedAt))
                    .to_owned(),
            )
            .await?;
        let columns = [
            uuid_null(Runs::NodeId),
            big_integer(Runs::LeaseGen).default(0).to_owned(),
            big_integer_null(Runs::LeaseUntilMs),
            boolean(Runs::CancelRequested).default(false).to_owned(),
            integer(Runs::Resumes).default(0).to_owned(),
        ];
        for mut col in columns {
            manager
                .alter_table(
                    Table::alter()
                        .table(Runs::Table)
                        .add_column(&mut col)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(RunCheckpoints::Table)
                    .col(pk_uuid(RunCheckpoints::RunId))
                    .col(big_integer(RunCheckpoints::LeaseGen))
                    .col(integer(RunCheckpoints::Step))
                    .col(json_binary(RunCheckpoints::State))
                    .col(json_binary(RunCheckpoints::Files))
                    .col(timestamp_with_time_zone(RunCheckpoints::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(SandboxHomes::Table)
                    .col(pk_uuid(SandboxHomes::ProjectId))
                    .col(uuid(SandboxHomes::NodeId))
                    .col(timestamp_with_time_zone(SandboxHomes::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        // Runs left "running" by an older version (at most one per project then too, but a
        // hand-edited database may have more): all but the newest of a project are ended,
        // so the index can be made.
        let db = manager.get_connection();
        db.execute_unprepared(
            "UPDATE runs SET status = 'interrupted', error = 'the server stopped' \
             WHERE status = 'running' AND EXISTS (SELECT 1 FROM runs newer \
             WHERE newer.project_id = runs.project_id AND newer.status = 'running' \
             AND newer.created_at > runs.created_at)",
        )
        .await?;
        db.execute_unprepared(ONE_RUNNING).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP INDEX IF EXISTS runs_one_running_per_project")
            .await?;
        manager
            .drop_table(Table::drop().table(SandboxHomes::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(RunCheckpoints::Table).to_owned())
            .await?;
        for col in [
            Runs::Resumes,
            Runs::CancelRequested,
            Runs::LeaseUntilMs,
            Runs::LeaseGen,
            Runs::NodeId,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Runs::Table)
                        .drop_column(col)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .drop_table(Table::drop().table(Nodes::Table).to_owned())
            .await
    }
}
