//! The CodeFlux schema as a sequence of SeaORM migrations.
//!
//! The server applies pending migrations at start; the `migration` binary runs them by hand
//! (up, down, status, fresh, refresh, reset). Each later feature adds a new file here; a
//! migration that has landed is never edited.

pub use sea_orm_migration::prelude::*;

mod m20261129_000001_create_projects_messages_fragments;
mod m20261129_000002_create_runs_and_events;
mod m20261202_000003_accounts;
mod m20261202_000004_message_details;
mod m20261202_000005_cluster;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261129_000001_create_projects_messages_fragments::Migration),
            Box::new(m20261129_000002_create_runs_and_events::Migration),
            Box::new(m20261202_000003_accounts::Migration),
            Box::new(m20261202_000004_message_details::Migration),
            Box::new(m20261202_000005_cluster::Migration),
        ]
    }
}

/// The database CodeFlux uses when DATABASE_URL is not set: a SQLite file in the data dir,
/// created on first use.
pub fn default_sqlite_url(data_dir: &std::path::Path) -> String {
    format!(
        "sqlite://{}?mode=rwc",
        data_dir.join("codeflux.db").display()
    )
}
