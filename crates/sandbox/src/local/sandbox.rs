//! One project's sandbox as handed to a run: the agent's file tools and commands.

use std::collections::BTreeMap;

use async_trait::async_trait;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::runtime::UseGuard;
use crate::{CommandResult, RunOptions, Sandbox, SandboxError};

/// A run's handle on a project's runtime; while it exists the runtime is never stopped to
/// make room or for being idle.
pub struct LocalSandbox {
    lease: UseGuard,
}

impl LocalSandbox {
    pub(super) fn new(lease: UseGuard) -> Self {
        Self { lease }
    }
}

#[async_trait]
impl Sandbox for LocalSandbox {
    fn project_id(&self) -> Uuid {
        self.lease.runtime().id
    }

    async fn write_file(&self, path: &str, content: &str) -> Result<(), SandboxError> {
        let (path, content) = (path.to_owned(), content.to_owned());
        self.lease
            .runtime()
            .blocking(move |ws| ws.write(&path, &content))
            .await
    }

    async fn read_file(&self, path: &str) -> Result<String, SandboxError> {
        let path = path.to_owned();
        self.lease
            .runtime()
            .blocking(move |ws| ws.read(&path))
            .await
    }

    async fn list_files(&self) -> Result<Vec<String>, SandboxError> {
        self.lease.runtime().blocking(|ws| ws.list()).await
    }

    async fn snapshot(&self) -> Result<BTreeMap<String, String>, SandboxError> {
        self.lease.runtime().blocking(|ws| ws.snapshot()).await
    }

    async fn run(
        &self,
        command: &str,
        opts: &RunOptions,
        progress: Option<mpsc::Sender<String>>,
    ) -> Result<CommandResult, SandboxError> {
        let rt = self.lease.runtime();
        if rt.is_stopped() {
            return Err(SandboxError::Stopped);
        }
        rt.touch();
        let r = rt.spec.run_shell(command, opts, progress).await;
        rt.touch();
        r
    }

    fn preview_url(&self) -> String {
        self.lease.runtime().preview_url.clone()
    }
}
