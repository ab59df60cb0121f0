//! Helpers for CodeFlux's own tests: throwaway databases (a SQLite file, a fresh PostgreSQL
//! database on the local server) and the real server binary on a free port.

pub mod e2b_double;
mod loopback;
pub mod scripted_llm;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use codeflux_db::Db;
use sea_orm::{ConnectionTrait, Database};

/// Where the tests find PostgreSQL: `CODEFLUX_TEST_PG_URL`, or the local server with trust auth.
pub fn pg_admin_url() -> String {
    std::env::var("CODEFLUX_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Which database engine a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A database that exists for one test and is removed afterwards.
pub struct TestDb {
    pub url: String,
    pub backend: Backend,
    pg_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> Result<TestDb> {
        match backend {
            Backend::Sqlite => Self::sqlite(),
            Backend::Postgres => Self::postgres().await,
        }
    }

    /// An empty SQLite file in a temporary directory.
    pub fn sqlite() -> Result<TestDb> {
        let dir = tempfile::tempdir()?;
        let url = codeflux_db::default_sqlite_url(dir.path());
        Ok(TestDb {
            url,
            backend: Backend::Sqlite,
            pg_name: None,
            _dir: Some(dir),
        })
    }

    /// A new, empty database on the local PostgreSQL, dropped when this value is dropped.
    pub async fn postgres() -> Result<TestDb> {
        let admin_url = pg_admin_url();
        let name = format!("codeflux_test_{}", uuid::Uuid::new_v4().simple());
        let admin = Database::connect(&admin_url).await.with_context(|| {
            format!(
                "connecting to PostgreSQL at {admin_url} (tests need it; set CODEFLUX_TEST_PG_URL)"
            )
        })?;
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await?;
        admin.close().await?;
        let base = admin_url
            .rsplit_once('/')
            .map(|(b, _)| b.to_owned())
            .ok_or_else(|| anyhow!("CODEFLUX_TEST_PG_URL has no database part"))?;
        Ok(TestDb {
            url: format!("{base}/{name}"),
            backend: Backend::Postgres,
            pg_name: Some(name),
            _dir: None,
        })
    }

    /// Connects (without migrating).
    pub async fn connect(&self) -> Result<Db> {
        Ok(codeflux_db::connect(&self.url).await?)
    }

    /// Connects and applies every migration.
    pub async fn migrated(&self) -> Result<Db> {
        Ok(codeflux_db::connect_and_migrate(&self.url).await?)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.pg_name.take() else {
            return;
        };
        // Drop may run inside a runtime; do the async clean-up on a thread of its own.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(admin) = Database::connect(&pg_admin_url()).await {
                    let _ = admin
                        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                    let _ = admin.close().await;
                }
            });
        })
        .join();
    }
}

/// The real `codeflux` binary, started on a free port with its own data directory.
pub struct ServerProcess {
    pub base_url: String,
    pub data_dir: PathBuf,
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

/// How to start a [`ServerProcess`].
pub struct ServerOptions {
    pub binary: PathBuf,
    /// The workspace root (the server reads Leptos.toml and serves target/site from there).
    pub workdir: PathBuf,
    pub data_dir: PathBuf,
    pub env: Vec<(String, String)>,
    /// Bind to this address instead of a free port (for restarts on the same port).
    pub addr: Option<String>,
}

impl ServerProcess {
    /// Starts the server and waits until it prints its address (at most 60 s).
    pub fn start(opts: ServerOptions) -> Result<ServerProcess> {
        let addr = opts.addr.unwrap_or_else(|| "127.0.0.1:0".to_owned());
        let mut cmd = Command::new(&opts.binary);
        cmd.current_dir(&opts.workdir)
            .env_remove("DATABASE_URL")
            .env_remove("OPENROUTER_API_KEY")
            .env_remove("LLM_BASE_URL")
            .env_remove("LLM_API_KEY")
            .env_remove("LLM_MODEL")
            .env_remove("CODEFLUX_SIGNUP")
            .env_remove("CODEFLUX_PUBLIC_URL")
            // One person on loopback unless a test turns accounts on (env below wins).
            .env("CODEFLUX_AUTH", "off")
            // The app is checked after every run; fix rounds ask the model for more turns, so
            // only the tests about them turn them on.
            .env("CODEFLUX_FIX_ROUNDS", "0")
            .env("LEPTOS_SITE_ADDR", &addr)
            .env("CODEFLUX_DATA_DIR", &opts.data_dir)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", opts.binary.display()))?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        if let Some(out) = child.stdout.take() {
            let tx = tx.clone();
            let log = log.clone();
            std::thread::spawn(move || pump(out, tx, log));
        }
        if let Some(err) = child.stderr.take() {
            let log = log.clone();
            std::thread::spawn(move || pump(err, tx, log));
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let _ = child.kill();
                bail!("server did not report its address in 60 s:\n{}", join(&log));
            }
            match rx.recv_timeout(left.min(Duration::from_millis(200))) {
                Ok(line) => {
                    if let Some(url) = line.split("listening on ").nth(1) {
                        let base_url = url.trim().to_owned();
                        return Ok(ServerProcess {
                            base_url,
                            data_dir: opts.data_dir,
                            child,
                            log,
                        });
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if let Ok(Some(status)) = child.try_wait() {
                        bail!("server exited with {status}:\n{}", join(&log));
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    let status = child.wait()?;
                    bail!("server exited with {status}:\n{}", join(&log));
                }
            }
        }
    }

    /// host:port the server listens on.
    pub fn addr(&self) -> &str {
        self.base_url.trim_start_matches("http://")
    }

    /// Everything the server printed so far.
    pub fn output(&self) -> String {
        join(&self.log)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the server outright (SIGKILL, no clean-up of its own) and waits for it.
    pub fn kill(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        join(&self.log)
    }

    /// Stops the server with SIGTERM semantics where possible and waits for it.
    pub fn stop(mut self) -> Result<String> {
        terminate(&mut self.child);
        Ok(join(&self.log))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

fn terminate(child: &mut Child) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    // A graceful stop first (the server handles SIGTERM), then a kill.
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn pump(
    stream: impl std::io::Read,
    tx: std::sync::mpsc::Sender<String>,
    log: Arc<Mutex<Vec<String>>>,
) {
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { break };
        if let Ok(mut l) = log.lock() {
            l.push(line.clone());
        }
        let _ = tx.send(line);
    }
}

fn join(log: &Arc<Mutex<Vec<String>>>) -> String {
    log.lock().map(|l| l.join("\n")).unwrap_or_default()
}

/// The workspace root, from a crate's manifest dir (crates live one or two levels below it).
pub fn workspace_root(manifest_dir: &str) -> PathBuf {
    let mut dir = Path::new(manifest_dir).to_path_buf();
    while !dir.join("Leptos.toml").exists() {
        if !dir.pop() {
            return PathBuf::from(manifest_dir);
        }
    }
    dir
}
