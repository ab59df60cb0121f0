use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Projects {
    Table,
    Id,
    Name,
    Template,
    Description,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Messages {
    Table,
    Id,
    ProjectId,
    Content,
    Role,
    Type,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Fragments {
    Table,
    Id,
    MessageId,
    SandboxUrl,
    Title,
    Files,
    CreatedAt,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Projects::Table)
                    .col(pk_uuid(Projects::Id))
                    .col(string(Projects::Name))
                    .col(string_len(Projects::Template, 32))
                    .col(text(Projects::Description))
                    .col(timestamp_with_time_zone(Projects::CreatedAt))
                    .col(timestamp_with_time_zone(Projects::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_projects_created_at")
                    .table(Projects::Table)
                    .col(Projects::CreatedAt)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Messages::Table)
                    .col(pk_uuid(Messages::Id))
                    .col(uuid(Messages::ProjectId))
                    .col(text(Messages::Content))
                    .col(string_len(Messages::Role, 16))
                    .col(string_len(Messages::Type, 16))
                    .col(timestamp_with_time_zone(Messages::CreatedAt))
                    .col(timestamp_with_time_zone(Messages::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_messages_project")
                            .from(Messages::Table, Messages::ProjectId)
                            .to(Projects::Table, Projects::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_messages_project_created")
                    .table(Messages::Table)
                    .col(Messages::ProjectId)
                    .col(Messages::CreatedAt)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Fragments::Table)
                    .col(pk_uuid(Fragments::Id))
                    .col(uuid_uniq(Fragments::MessageId))
                    .col(text(Fragments::SandboxUrl))
                    .col(text(Fragments::Title))
                    .col(json_binary(Fragments::Files))
                    .col(timestamp_with_time_zone(Fragments::CreatedAt))
                    .col(timestamp_with_time_zone(Fragments::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_fragments_message")
                            .from(Fragments::Table, Fragments::MessageId)
                            .to(Messages::Table, Messages::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Fragments::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Messages::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Projects::Table).to_owned())
            .await
    }
}
