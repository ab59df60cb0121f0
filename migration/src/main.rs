//! `migration`: apply or inspect the CodeFlux schema by hand.
//!
//! The database is DATABASE_URL, or the SQLite file under CODEFLUX_DATA_DIR (default ./data),
//! exactly as the server picks it. `.env` is read first.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use migration::{Migrator, MigratorTrait, default_sqlite_url};
use sea_orm_migration::sea_orm::Database;

#[derive(Parser)]
#[command(
    version,
    about = "Apply, roll back or inspect the CodeFlux database schema."
)]
struct Cli {
    /// Database to migrate (sqlite://... or postgres://...). Default: the SQLite file in the data dir.
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
    /// Data directory holding the default SQLite file.
    #[arg(long, env = "CODEFLUX_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply pending migrations (all, or the next N).
    Up {
        #[arg(short = 'n', long)]
        steps: Option<u32>,
    },
    /// Roll back applied migrations (the last one, or the last N).
    Down {
        #[arg(short = 'n', long, default_value_t = 1)]
        steps: u32,
    },
    /// List every migration and whether it is applied.
    Status,
    /// Drop every table, then apply all migrations.
    Fresh,
    /// Roll back all applied migrations, then apply all migrations.
    Refresh,
    /// Roll back all applied migrations.
    Reset,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = dotenvy::dotenv();
    let cli = Cli::parse();
    let url = match cli.database_url {
        Some(url) => url,
        None => {
            std::fs::create_dir_all(&cli.data_dir)
                .with_context(|| format!("creating data dir {}", cli.data_dir.display()))?;
            default_sqlite_url(&cli.data_dir)
        }
    };
    let db = Database::connect(&url)
        .await
        .with_context(|| "connecting to the database (check DATABASE_URL)".to_string())?;
    match cli.command {
        Command::Up { steps } => Migrator::up(&db, steps).await?,
        Command::Down { steps } => Migrator::down(&db, Some(steps)).await?,
        Command::Status => {
            let applied = Migrator::get_applied_migrations(&db).await?;
            let pending = Migrator::get_pending_migrations(&db).await?;
            for m in &applied {
                println!("applied  {}", m.name());
            }
            for m in &pending {
                println!("pending  {}", m.name());
            }
            println!("{} applied, {} pending", applied.len(), pending.len());
        }
        Command::Fresh => Migrator::fresh(&db).await?,
        Command::Refresh => Migrator::refresh(&db).await?,
        Command::Reset => Migrator::reset(&db).await?,
    }
    Ok(())
}
