//! A run's checkpoints: before every model call the agent's state (transcript, tool results,
//! counters) and every source file of the workspace are stored under the run's lease, so that
//! a node taking the run over rebuilds the workspace and continues from there (repeating at
//! most the step that was under way).

use std::collections::BTreeMap;

use async_trait::async_trait;
use codeflux_agent::{AgentError, Checkpoints, Progress};
use codeflux_db::cluster::{self, Checkpoint, Fence};
use codeflux_db::{Db, DbError};
use codeflux_protocol::TokenUsage;
use codeflux_sandbox::Sandbox;
use serde::{Deserialize, Serialize};

use super::sink::RunSink;

/// What a checkpoint's state holds besides the files.
#[derive(Serialize, Deserialize)]
struct State {
    progress: Progress,
    usage: Option<TokenUsage>,
    model: Option<String>,
}

/// What a resumed run continues from.
pub(super) struct Resume {
    pub progress: Progress,
    pub files: BTreeMap<String, String>,
    pub usage: Option<TokenUsage>,
    pub model: Option<String>,
}

impl Resume {
    pub(super) fn from_checkpoint(cp: Checkpoint) -> Result<Resume, serde_json::Error> {
        let state: State = serde_json::from_value(cp.state)?;
        let files: BTreeMap<String, String> = serde_json::from_value(cp.files)?;
        Ok(Resume {
            progress: state.progress,
            files,
            usage: state.usage,
            model: state.model,
        })
    }
}

/// Stores checkpoints of one execution of a run (fenced by its lease). The workspace's files
/// are written again only when they changed since the last checkpoint (most steps of a long
/// run change a few files or none; the transcript changes every step).
pub(super) struct RunCheckpoints<'a> {
    pub db: &'a Db,
    pub fence: Fence,
    pub sandbox: &'a dyn Sandbox,
    pub sink: &'a RunSink,
    /// The digest of the files the last stored checkpoint holds.
    pub stored_files: std::sync::Mutex<Option<[u8; 32]>>,
}

/// A digest of a workspace's files (paths and contents).
fn digest(files: &BTreeMap<String, String>) -> [u8; 32] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for (path, content) in files {
        h.update(path.as_bytes());
        h.update([0]);
        h.update(content.len().to_le_bytes());
        h.update(content.as_bytes());
    }
    h.finalize().into()
}

#[async_trait]
impl Checkpoints for RunCheckpoints<'_> {
    async fn save(&self, progress: &Progress) -> Result<(), AgentError> {
        let files = match self.sandbox.snapshot().await {
            Ok(f) => f,
            // The run goes on; a takeover would repeat more than one step.
            Err(e) => {
                tracing::warn!(run = %self.fence.run_id, error = %e, "reading the workspace for a checkpoint");
                return Ok(());
            }
        };
        let state = State {
            progress: progress.clone(),
            usage: self.sink.usage(),
            model: self.sink.model(),
        };
        let step = i32::try_from(progress.step()).unwrap_or(i32::MAX);
        let state = match serde_json::to_value(&state) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(run = %self.fence.run_id, error = %e, "a checkpoint could not be written");
                return Ok(());
            }
        };
        let sum = digest(&files);
        let same_files = self
            .stored_files
            .lock()
            .is_ok_and(|s| s.as_ref() == Some(&sum));
        if same_files {
            match cluster::save_checkpoint_state(self.db, self.fence, step, &state).await {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(DbError::Fenced) => return Err(AgentError::Superseded),
                Err(e) => {
                    tracing::warn!(run = %self.fence.run_id, error = %e, "storing a checkpoint");
                    return Ok(());
                }
            }
        }
        let files = match serde_json::to_value(&files) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(run = %self.fence.run_id, error = %e, "a checkpoint could not be written");
                return Ok(());
            }
        };
        let cp = Checkpoint { step, state, files };
        match cluster::save_checkpoint(self.db, self.fence, &cp).await {
            Ok(()) => {
                if let Ok(mut stored) = self.stored_files.lock() {
                    *stored = Some(sum);
                }
                Ok(())
            }
            Err(DbError::Fenced) => Err(AgentError::Superseded),
            // The run goes on; a takeover would repeat more than one step.
            Err(e) => {
                tracing::warn!(run = %self.fence.run_id, error = %e, "storing a checkpoint");
                Ok(())
            }
        }
    }
}
