//! The work of a run: its request and history, the project's sandbox, the agent.

use std::collections::BTreeMap;

use codeflux_agent::{AgentError, Outcome, Task};
use codeflux_db::cluster::Fence;
use codeflux_protocol::{AppError, MessageKind, Role, Run};

use super::checkpoint::{Resume, RunCheckpoints};
use super::sink::RunSink;
use super::{RunError, RunManager};
use crate::db_error;

/// A finished run's work: the outcome, the files of the new version, where it is seen.
pub(super) struct Done {
    pub outcome: Outcome,
    pub files: BTreeMap<String, String>,
    pub sandbox_url: String,
}

impl RunManager {
    /// The work itself: the model, the sandbox (from the checkpoint's files when resuming,
    /// else from the latest version), the agent (checkpointed before every model call).
    pub(super) async fn work(
        &self,
        run: &Run,
        sink: &RunSink,
        fence: Fence,
        resume: Option<Resume>,
    ) -> Result<Done, RunError> {
        let default = self
            .0
            .llm
            .as_ref()
            .map_err(|e| RunError::App(AppError::unavailable(e.message.clone())))?;
        let chosen;
        let llm = match run.model.as_deref() {
            Some(m) if m != default.endpoint().model => {
                chosen = default.with_model(m);
                &chosen
            }
            _ => default,
        };
        let db = &self.0.db;
        let project = codeflux_db::find_project(db, run.project_id)
            .await
            .map_err(|e| RunError::App(db_error(e)))?
            .ok_or_else(|| RunError::App(AppError::not_found("The project no longer exists.")))?;
        let messages = codeflux_db::list_messages(db, project.id)
            .await
            .map_err(|e| RunError::App(db_error(e)))?;
        let pos = messages.iter().position(|m| m.id == run.message_id);
        let prompt = pos.map(|i| messages[i].content.clone()).ok_or_else(|| {
            RunError::App(AppError::not_found(
                "The message of this run no longer exists.",
            ))
        })?;
        let earlier = &messages[..pos.unwrap_or(0)];
        let latest = earlier.iter().rev().find_map(|m| m.fragment.clone());
        let history: Vec<(Role, String)> = earlier
            .iter()
            .map(|m| {
                let text = match (&m.role, &m.kind, &m.fragment) {
                    (Role::Assistant, MessageKind::Result, Some(f)) => {
                        format!("{}\n(Version: {})", m.content, f.title)
                    }
                    (Role::Assistant, MessageKind::Error, _) => {
                        format!("(That request failed: {})", m.content)
                    }
                    _ => m.content.clone(),
                };
                (m.role, text)
            })
            .collect();
        let (progress, files) = match resume {
            Some(r) => (Some(r.progress), Some(r.files)),
            None => (None, latest.as_ref().map(|f| f.files.clone())),
        };
        let sandbox = self
            .0
            .sandboxes
            .open(project.id, project.template, files.as_ref())
            .await
            .map_err(|e| {
                RunError::App(AppError::unavailable(format!(
                    "The sandbox could not start: {e}"
                )))
            })?;
        let task = Task {
            template: project.template,
            history,
            prompt,
            follow_up: latest.is_some(),
        };
        let snapshot = || async {
            sandbox.snapshot().await.map_err(|e| {
                RunError::App(AppError::internal(format!(
                    "Reading the project's files failed: {e}"
                )))
            })
        };
        self.hold_sandbox(project.id).await;
        let checkpoints = RunCheckpoints {
            db,
            fence,
            sandbox: sandbox.as_ref(),
            sink,
            stored_files: std::sync::Mutex::new(None),
        };
        let outcome = codeflux_agent::run_resumable(
            llm,
            sandbox.as_ref(),
            sink,
            &task,
            &self.0.agent,
            progress,
            Some(&checkpoints),
        )
        .await;
        match outcome {
            Ok(outcome) => Ok(Done {
                outcome,
                files: snapshot().await?,
                sandbox_url: sandbox.preview_url(),
            }),
            // Out of steps: what was written is worth keeping for a follow-up.
            Err(error @ AgentError::IterationLimit(_)) => Err(RunError::Unfinished {
                error,
                files: snapshot().await?,
                sandbox_url: sandbox.preview_url(),
            }),
            Err(e) => Err(RunError::Agent(e)),
        }
    }
}
