//! What each assistant message records of its run (issue 13): the run, the model used, the
//! tokens and cost as the provider counted them, and what the app's check found; and the
//! model each run was asked to use.
//!
//! SQLite alters one column per statement, so each column is its own ALTER TABLE.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Messages {
    Table,
    RunId,
    Model,
    Usage,
    Checks,
}

#[derive(DeriveIden)]
enum Runs {
    Table,
    Model,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let columns = [
            uuid_null(Messages::RunId),
            string_len_null(Messages::Model, 200),
            json_binary_null(Messages::Usage),
            json_binary_null(Messages::Checks),
        ];
        for mut col in columns {
            manager
                .alter_table(
                    Table::alter()
                        .table(Messages::Table)
                        .add_column(&mut col)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Runs::Table)
                    .add_column(string_len_null(Runs::Model, 200))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Runs::Table)
                    .drop_column(Runs::Model)
                    .to_owned(),
            )
            .await?;
        for col in [
            Messages::Checks,
            Messages::Usage,
            Messages::Model,
            Messages::RunId,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Messages::Table)
                        .drop_column(col)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
