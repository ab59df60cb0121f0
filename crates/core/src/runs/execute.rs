//! One claimed run on this node, start (or resumption) to end: its lease kept, the work, and
//! the way it ended stored (`end.rs`). A run this node loses (its lease taken over) stops here
//! without another write: the node that took it finishes it.

use codeflux_agent::AgentError;
use codeflux_db::MessageMeta;
use codeflux_db::cluster::{Claim, Fence};
use codeflux_protocol::{Run, RunEvent};
use tokio_util::sync::CancellationToken;

use super::checkpoint::Resume;
use super::sink::RunSink;
use super::{Local, RunError, RunManager, lease};

/// Removes an execution's entry from the node's map when it ends, if it is still its own.
struct LocalEntry<'a> {
    manager: &'a RunManager,
    run_id: uuid::Uuid,
    generation: i64,
}

impl Drop for LocalEntry<'_> {
    fn drop(&mut self) {
        if let Ok(mut local) = self.manager.0.local.lock()
            && local
                .get(&self.run_id)
                .is_some_and(|e| e.generation == self.generation)
        {
            local.remove(&self.run_id);
        }
    }
}

/// Takeovers of one run after which it is ended as interrupted (a run that brings every node
/// that works on it down must not go round the cluster for ever).
const MAX_RESUMES: i32 = 5;

impl RunManager {
    /// A claimed run, with its lease kept while it works.
    pub(super) async fn execute(&self, claim: Claim) {
        let Claim {
            run,
            fence,
            taken_from,
            resumes,
        } = claim;
        let cancel = CancellationToken::new();
        let lost = CancellationToken::new();
        // An execution of this run still here (this node lost the lease and took it back):
        // it stops first, so two never share the project's sandbox.
        self.evict(run.id).await;
        if let Ok(mut local) = self.0.local.lock() {
            local.insert(
                run.id,
                Local {
                    generation: fence.generation,
                    cancel: cancel.clone(),
                    lost: lost.clone(),
                },
            );
        }
        // Removes this execution's entry however it ends (a panic included).
        let _entry = LocalEntry {
            manager: self,
            run_id: run.id,
            generation: fence.generation,
        };
        let _keeper = lease::keep(
            self.0.db.clone(),
            fence,
            self.0.node.lease,
            cancel.clone(),
            lost.clone(),
        );
        if taken_from.is_some() {
            crate::metrics::lease_takeover();
            tracing::info!(run = %run.id, from = ?taken_from, resumes, "resuming a run whose node stopped renewing its lease");
        }
        if resumes > MAX_RESUMES {
            self.interrupted(&run, fence, resumes).await;
        } else {
            self.work_claimed(&run, fence, taken_from.is_some(), &cancel, &lost)
                .await;
        }
    }

    /// Stops an older execution of `run_id` on this node and waits (a little) for it to go.
    async fn evict(&self, run_id: uuid::Uuid) {
        for _ in 0..200 {
            let older = self
                .0
                .local
                .lock()
                .ok()
                .and_then(|l| l.get(&run_id).map(|e| e.lost.clone()));
            let Some(lost) = older else {
                return;
            };
            lost.cancel();
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        tracing::warn!(run = %run_id, "an older execution of the run did not stop in 10 s");
    }

    async fn work_claimed(
        &self,
        run: &Run,
        fence: Fence,
        resumed: bool,
        cancel: &CancellationToken,
        lost: &CancellationToken,
    ) {
        let project_id = run.project_id;
        let resume = if resumed {
            self.load_resume(run.id).await
        } else {
            None
        };
        if resumed {
            // What the lost execution streamed of its unfinished step is shown again.
            self.0
                .bus
                .emit_fenced(
                    project_id,
                    run.id,
                    RunEvent::TextReset {
                        reason: "The run moved to another server; its last step is repeated."
                            .into(),
                    },
                    Some(fence),
                )
                .await;
        }
        let event = match (resumed, &resume) {
            (false, _) => RunEvent::RunStarted {
                message_id: run.message_id,
            },
            (true, Some(r)) => RunEvent::Notice {
                message: format!(
                    "The server that was working on this stopped answering; another one continues from step {}.",
                    r.progress.step()
                ),
            },
            (true, None) => RunEvent::Notice {
                message: "The server that was working on this stopped answering before its first step; another one starts it again.".into(),
            },
        };
        self.0
            .bus
            .emit_fenced(project_id, run.id, event, Some(fence))
            .await;
        let usage = resume
            .as_ref()
            .map_or((None, None), |r| (r.usage, r.model.clone()));
        let sink = RunSink::new(self.0.bus.clone(), project_id, fence, usage);
        let started = std::time::Instant::now();
        let result = tokio::select! {
            biased;
            () = lost.cancelled() => {
                tracing::info!(run = %run.id, "this node no longer holds the run");
                return;
            }
            () = cancel.cancelled() => None,
            r = self.work(run, &sink, fence, resume) => Some(r),
        };
        sink.flush().await;
        if lost.is_cancelled() {
            return;
        }
        let meta = MessageMeta {
            run_id: Some(run.id),
            model: sink.model().or_else(|| run.model.clone()),
            usage: sink.usage(),
            checks: None,
        };
        let (prompt, completion) = meta
            .usage
            .as_ref()
            .map_or((0, 0), |u| (u.prompt_tokens, u.completion_tokens));
        crate::metrics::run_ended(started.elapsed().as_secs_f64(), prompt, completion);
        match result {
            Some(Ok(done)) => self.finished(run, fence, done, meta).await,
            Some(Err(RunError::Unfinished {
                error,
                files,
                sandbox_url,
            })) => {
                self.unfinished(run, fence, &error, files, sandbox_url, meta)
                    .await
            }
            Some(Err(RunError::Agent(AgentError::Superseded))) => {
                tracing::info!(run = %run.id, "another node continues the run");
            }
            Some(Err(RunError::Agent(e))) => {
                let class = e.class();
                let reason = match &e {
                    AgentError::Llm(l) => l.message.clone(),
                    other => other.to_string(),
                };
                if let AgentError::Llm(l) = &e {
                    tracing::warn!(run = %run.id, class, detail = %l.detail, "run failed");
                } else {
                    tracing::warn!(run = %run.id, class, error = %e, "run failed");
                }
                self.fail(run, fence, &reason, class, meta).await;
            }
            Some(Err(RunError::App(e))) => {
                tracing::warn!(run = %run.id, error = %e, "run failed");
                self.fail(run, fence, &e.message, "setup", meta).await;
            }
            None => self.cancelled(run, fence, meta).await,
        }
    }

    /// What a run stored to continue from (None: nothing usable; it starts again).
    async fn load_resume(&self, run_id: uuid::Uuid) -> Option<Resume> {
        match codeflux_db::cluster::load_checkpoint(&self.0.db, run_id).await {
            Ok(Some(cp)) => match Resume::from_checkpoint(cp) {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::warn!(run = %run_id, error = %e, "a checkpoint that cannot be read: starting the run again");
                    None
                }
            },
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(run = %run_id, error = %e, "reading the run's checkpoint: starting it again");
                None
            }
        }
    }
}
