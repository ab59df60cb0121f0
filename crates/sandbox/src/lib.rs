//! Per-project sandboxes for the agent's work.
//!
//! - [`Sandbox`]: what the agent can do in a project's sandbox (files, commands, preview).
//! - [`SandboxProvider`]: opens a project's sandbox, from its template or its latest files.
//! - [`workspace`]: host-side file operations that never leave the workspace (openat2).
//! - [`local`]: the backend on the server's own machine (bubblewrap, one uid per project,
//!   a disk image per project, seccomp, cgroups).
//! - [`e2b`]: the backend on E2B's machines (its REST API and envd), for when local machines
//!   are not wanted.

pub mod cgroup;
pub mod check;
pub mod disk;
pub mod e2b;
pub mod fsutil;
pub mod local;
pub mod logring;
pub mod mountns;
pub mod net;
mod output;
mod process;
pub mod seccomp;
pub mod template;
pub mod workspace;

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use codeflux_protocol::Template;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use uuid::Uuid;

pub use process::{CommandResult, RunOptions};
pub use workspace::FileError;

/// A failure of the sandbox itself (not of a command run in it).
#[derive(Debug, Clone, thiserror::Error)]
pub enum SandboxError {
    /// A file operation was refused or failed (goes back to the model).
    #[error(transparent)]
    File(#[from] FileError),
    /// The sandbox could not start a process.
    #[error("could not start the sandbox: {0}")]
    Spawn(String),
    /// The sandbox could not be prepared (template, workspace, limits).
    #[error("could not prepare the sandbox: {0}")]
    Setup(String),
    /// As many sandboxes run as the server may run, and none can be stopped for this one.
    #[error("{0}")]
    Busy(String),
    /// The sandbox was stopped while this was under way.
    #[error("the sandbox was stopped")]
    Stopped,
}

/// What the agent can do inside one project's sandbox.
#[async_trait]
pub trait Sandbox: Send + Sync {
    fn project_id(&self) -> Uuid;
    /// Writes a text file (relative path inside the project).
    async fn write_file(&self, path: &str, content: &str) -> Result<(), SandboxError>;
    /// Reads a text file.
    async fn read_file(&self, path: &str) -> Result<String, SandboxError>;
    /// Every source file (installed packages and build output left out), sorted.
    async fn list_files(&self) -> Result<Vec<String>, SandboxError>;
    /// Every source file with its content: what a fragment stores.
    async fn snapshot(&self) -> Result<BTreeMap<String, String>, SandboxError>;
    /// Runs a shell command in the project directory; output chunks go to `progress`.
    async fn run(
        &self,
        command: &str,
        opts: &RunOptions,
        progress: Option<mpsc::Sender<String>>,
    ) -> Result<CommandResult, SandboxError>;
    /// Where the project's live preview is seen.
    fn preview_url(&self) -> String;

    /// Checks the app: the type check, the dev server's errors and a load of the page in a
    /// headless browser. `None` when this sandbox cannot check.
    async fn check(&self) -> Result<Option<codeflux_protocol::CheckReport>, SandboxError> {
        Ok(None)
    }

    /// What [`Sandbox::check`] looks at, for people ("type check, dev server and ...").
    fn check_plan(&self) -> &'static str {
        "type check, dev server and a page load in a headless browser"
    }
}

/// Where a project's live preview stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreviewState {
    /// Nothing runs; starting it revives the project from its latest files.
    Stopped,
    /// Getting ready; the text says what happens.
    Starting(String),
    /// The dev server answers.
    Ready,
    /// It could not start or keeps stopping; the text says why (its last output). The next
    /// request tries again once a short back-off has passed.
    Failed(String),
    /// The server runs as many sandboxes as it may and none is idle; try again later.
    Busy(String),
}

/// A byte stream to a dev server: plain TCP on this machine, TLS to E2B's edge.
pub trait PreviewIo: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> PreviewIo for T {}

/// A connection to a project's dev server. While it is open the sandbox counts as in use (it
/// is not stopped to make room for another).
pub struct PreviewConn {
    stream: Box<dyn PreviewIo>,
    /// The Host the upstream routes by (E2B's `<port>-<sandbox>.<domain>`); None: keep the
    /// browser's.
    upstream_host: Option<String>,
    /// Headers the upstream needs on every request (E2B's routing headers).
    upstream_headers: Vec<(&'static str, String)>,
    _in_use: Option<Box<dyn Send + Sync>>,
}

impl PreviewConn {
    /// `in_use` is dropped with the connection.
    pub fn new(stream: impl PreviewIo + 'static, in_use: Option<Box<dyn Send + Sync>>) -> Self {
        Self {
            stream: Box::new(stream),
            upstream_host: None,
            upstream_headers: Vec::new(),
            _in_use: in_use,
        }
    }

    /// Requests on this connection name `host` (and carry `headers`).
    pub fn with_upstream(mut self, host: String, headers: Vec<(&'static str, String)>) -> Self {
        self.upstream_host = Some(host);
        self.upstream_headers = headers;
        self
    }

    /// The Host requests must carry on this connection, when it is not the browser's.
    pub fn upstream_host(&self) -> Option<&str> {
        self.upstream_host.as_deref()
    }

    /// Headers every request on this connection must carry.
    pub fn upstream_headers(&self) -> &[(&'static str, String)] {
        &self.upstream_headers
    }
}

impl AsyncRead for PreviewConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for PreviewConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Opens project sandboxes.
#[async_trait]
pub trait SandboxProvider: Send + Sync {
    /// The sandbox of `project_id`. A new project starts from `template`; with `files`, the
    /// workspace's sources are made exactly those files (a follow-up continues from the
    /// latest fragment).
    async fn open(
        &self,
        project_id: Uuid,
        template: Template,
        files: Option<&BTreeMap<String, String>>,
    ) -> Result<Arc<dyn Sandbox>, SandboxError>;

    /// Stops everything the project's sandbox runs.
    async fn stop(&self, project_id: Uuid);

    /// Stops the project's sandbox and removes everything of it (its disk); the project is
    /// being deleted.
    async fn delete(&self, project_id: Uuid) -> Result<(), SandboxError>;

    /// The preview address of a project (also when its sandbox is not running).
    fn preview_url(&self, project_id: Uuid) -> String;

    /// Where the project's preview stands (cheap, no I/O).
    fn preview_state(&self, project_id: Uuid) -> PreviewState;

    /// Makes the preview run: the sandbox (revived from `files` when it is not running) and its
    /// dev server (restarted if it stopped and its back-off has passed). Returns once starting
    /// is under way; `Busy` when no sandbox may start now.
    async fn start_preview(
        &self,
        project_id: Uuid,
        template: Template,
        files: Option<&BTreeMap<String, String>>,
    ) -> Result<(), SandboxError>;

    /// Makes the running preview show exactly `files` (a chosen version), starting the sandbox
    /// if needed; packages are installed when package.json differs.
    async fn show_files(
        &self,
        project_id: Uuid,
        template: Template,
        files: &BTreeMap<String, String>,
    ) -> Result<(), SandboxError>;

    /// A connection to the project's dev server (for the preview proxy).
    async fn connect_preview(&self, project_id: Uuid) -> std::io::Result<PreviewConn>;

    /// The dev server's recent output.
    fn dev_server_log(&self, project_id: Uuid) -> Vec<String>;

    /// Sandboxes live on this server now (for metrics).
    fn live_sandboxes(&self) -> usize;

    /// Stops every sandbox (the server is shutting down).
    async fn stop_all(&self);
}
