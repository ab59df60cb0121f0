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

/// Stores checkpoints of one execution of a run (fenced by its lease).
pub(super) struct RunCheckpoints<'a> {
    pub db: &'a Db,
    pub fence: Fence,
    pub sandbox: &'a dyn Sandbox,
    pub sink: &'a RunSink,
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
        let (state, files) = match (serde_json::to_value(&state), serde_json::to_value(&files)) {
            (Ok(s), Ok(f)) => (s, f),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(run = %self.fence.run_id, error = %e, "a checkpoint could not be written");
                return Ok(());
            }
        };
        let cp = Checkpoint {
            step: i32::try_from(progress.step()).unwrap_or(i32::MAX),
            state,
            files,
        };
        match cluster::save_checkpoint(self.db, self.fence, &cp).await {
            Ok(()) => Ok(()),
            Err(DbError::Fenced) => Err(AgentError::Superseded),
            // The run goes on; a takeover would repeat more than one step.
            Err(e) => {
                tracing::warn!(run = %self.fence.run_id, error = %e, "storing a checkpoint");
                Ok(())
            }
        }
    }
}
