//! Configuration: read once at start from the command line, the environment and `.env`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "codeflux",
    version,
    about = "CodeFlux: describe an app, watch an agent build it in a sandbox, preview it live.",
    long_about = "CodeFlux serves its web app, its /api server functions and /healthz.\n\
                  Settings come from flags or the environment (a .env file in the working directory is read first)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: Config,
}

#[derive(Subcommand, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Serve the app (the default).
    Serve,
    /// Apply migrations, then fill the database with a few sample projects.
    Seed,
}

#[derive(Parser, Debug, Clone)]
pub struct Config {
    /// Address to listen on, host:port. Default: site-addr in Leptos.toml (127.0.0.1:3000).
    #[arg(long = "addr", env = "LEPTOS_SITE_ADDR")]
    pub addr: Option<SocketAddr>,

    /// Database URL: sqlite://path or postgres://user@host/db. Default: a SQLite file in the data dir.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Directory for CodeFlux's own data (the default SQLite database, workspaces).
    #[arg(long, env = "CODEFLUX_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// The Leptos settings file (site root, pkg dir, output name).
    #[arg(long, env = "CODEFLUX_LEPTOS_TOML", default_value = "Leptos.toml")]
    pub leptos_toml: PathBuf,
}

impl Config {
    /// The database to use: DATABASE_URL, or the SQLite file in the data dir.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) if !url.trim().is_empty() => url.trim().to_owned(),
            _ => codeflux_core::db::default_sqlite_url(&self.data_dir),
        }
    }
}
