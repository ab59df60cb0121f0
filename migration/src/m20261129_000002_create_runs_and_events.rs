use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Projects {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Messages {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Runs {
    Table,
    Id,
    ProjectId,
    MessageId,
    Status,
    Error,
    Usage,
    CreatedAt,
    StartedAt,
    FinishedAt,
}

#[derive(DeriveIden)]
enum RunEvents {
    Table,
    ProjectId,
    Seq,
    RunId,
    Type,
    Payload,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Runs::Table)
                    .col(pk_uuid(Runs::Id))
                    .col(uuid(Runs::ProjectId))
                    .col(uuid(Runs::MessageId))
                    .col(string_len(Runs::Status, 16))
                    .col(text_null(Runs::Error))
                    .col(json_binary_null(Runs::Usage))
                    .col(timestamp_with_time_zone(Runs::CreatedAt))
                    .col(timestamp_with_time_zone_null(Runs::StartedAt))
                    .col(timestamp_with_time_zone_null(Runs::FinishedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_runs_project")
                            .from(Runs::Table, Runs::ProjectId)
                            .to(Projects::Table, Projects::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_runs_message")
                            .from(Runs::Table, Runs::MessageId)
                            .to(Messages::Table, Messages::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_runs_project_created")
                    .table(Runs::Table)
                    .col(Runs::ProjectId)
                    .col(Runs::CreatedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_runs_status")
                    .table(Runs::Table)
                    .col(Runs::Status)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(RunEvents::Table)
                    .col(uuid(RunEvents::ProjectId))
                    .col(big_integer(RunEvents::Seq))
                    .col(uuid(RunEvents::RunId))
                    .col(string_len(RunEvents::Type, 32))
                    .col(json_binary(RunEvents::Payload))
                    .col(timestamp_with_time_zone(RunEvents::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(RunEvents::ProjectId)
                            .col(RunEvents::Seq),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_run_events_project")
                            .from(RunEvents::Table, RunEvents::ProjectId)
                            .to(Projects::Table, Projects::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(RunEvents::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Runs::Table).to_owned())
            .await
    }
}
