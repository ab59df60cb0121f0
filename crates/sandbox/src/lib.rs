//! Per-project sandboxes for the agent's work.
//!
//! - [`Sandbox`]: what the agent can do in a project's sandbox (files, commands, preview).
//! - [`SandboxProvider`]: opens a project's sandbox, from its template or its latest files.
//! - [`workspace`]: host-side file operations that never leave the workspace (openat2).
//! - [`local`]: the backend on the server's own machine (bubblewrap, one uid per project).

pub mod cgroup;
pub mod local;
pub mod net;
mod process;
pub mod template;
pub mod workspace;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use codeflux_protocol::Template;
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
    /// It could not start; the text says why.
    Failed(String),
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

    /// The preview address of a project (also when its sandbox is not running).
    fn preview_url(&self, project_id: Uuid) -> String;

    /// Where the project's preview stands (cheap, no I/O).
    fn preview_state(&self, project_id: Uuid) -> PreviewState;

    /// Makes the preview run: the sandbox (revived from `files` when it is not running) and its
    /// dev server. Returns once starting is under way.
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
    async fn connect_preview(&self, project_id: Uuid) -> std::io::Result<tokio::net::TcpStream>;

    /// The dev server's recent output.
    fn dev_server_log(&self, project_id: Uuid) -> Vec<String>;
}
