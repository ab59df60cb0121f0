//! One run, start to end: the agent's outcome stored as a message (and version), an unfinished
//! version kept at the step limit, or a failure told. Every way out leaves a message that
//! records the run's model and tokens, and a final event.

use codeflux_agent::AgentError;
use codeflux_db::{MessageMeta, NewFragment};
use codeflux_protocol::{Message, Run, RunEvent, RunStatus};
use tokio_util::sync::CancellationToken;

use super::sink::RunSink;
use super::work::Done;
use super::{RunError, RunManager};

impl RunManager {
    /// One run, start to end.
    pub(super) async fn execute(&self, run: Run, token: CancellationToken) {
        let db = &self.0.db;
        let project_id = run.project_id;
        match codeflux_db::mark_running(db, run.id).await {
            Ok(true) => {}
            Ok(false) => {
                // A cancel landed after the queue was read: it already said so.
                tracing::info!(run = %run.id, "the run was cancelled before it started");
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, run = %run.id, "marking a run as running; not starting it");
                self.fail(&run, "The run could not be started: the database did not answer. Send the request again.", "internal", MessageMeta::default()).await;
                return;
            }
        }
        self.0
            .bus
            .emit(
                project_id,
                run.id,
                RunEvent::RunStarted {
                    message_id: run.message_id,
                },
            )
            .await;
        let sink = RunSink::new(self.0.bus.clone(), project_id, run.id);
        let started = std::time::Instant::now();
        let result = tokio::select! {
            r = self.work(&run, &sink) => Some(r),
            () = token.cancelled() => None,
        };
        sink.flush().await;
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
            Some(Ok(done)) => self.finished(&run, done, meta).await,
            Some(Err(RunError::Unfinished {
                error,
                files,
                sandbox_url,
            })) => {
                self.unfinished(&run, &error, files, sandbox_url, meta)
                    .await
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
                self.fail(&run, &reason, class, meta).await;
            }
            Some(Err(RunError::App(e))) => {
                tracing::warn!(run = %run.id, error = %e, "run failed");
                self.fail(&run, &e.message, "setup", meta).await;
            }
            None => self.cancelled(&run, meta).await,
        }
    }

    /// Stores the reply and its version, ends the run.
    async fn finished(&self, run: &Run, done: Done, meta: MessageMeta) {
        let Done {
            outcome,
            files,
            sandbox_url,
        } = done;
        let checks = outcome.checks.clone();
        let stored = codeflux_db::insert_result(
            &self.0.db,
            run.project_id,
            outcome.reply.clone(),
            NewFragment {
                sandbox_url,
                title: outcome.title.clone(),
                files,
            },
            MessageMeta { checks, ..meta },
        )
        .await;
        let message = match stored {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %e, "storing a run's result");
                self.fail(
                    run,
                    "The result could not be saved (database error). Try again.",
                    "database",
                    MessageMeta::default(),
                )
                .await;
                return;
            }
        };
        let usage = serde_json::json!({
            "prompt_tokens": outcome.usage.prompt_tokens,
            "completion_tokens": outcome.usage.completion_tokens,
            "cost_usd": message.usage.and_then(|u| u.cost_usd),
            "requests": outcome.requests,
            "chars_sent": outcome.chars_sent,
            "iterations": outcome.iterations,
            "checks_passed": outcome.checks.as_ref().map(|c| c.passed()),
        });
        if let Err(e) =
            codeflux_db::mark_ended(&self.0.db, run.id, RunStatus::Finished, None, Some(usage))
                .await
        {
            tracing::error!(run = %run.id, error = %e, "recording a finished run");
        }
        tracing::info!(
            run = %run.id,
            iterations = outcome.iterations,
            prompt_tokens = outcome.usage.prompt_tokens,
            checks_passed = ?outcome.checks.as_ref().map(|c| c.passed()),
            "run finished"
        );
        self.announce_version(run, &message, &outcome.title).await;
    }

    async fn announce_version(&self, run: &Run, message: &Message, title: &str) {
        if let Some(fragment) = &message.fragment {
            self.0
                .bus
                .emit_stored(
                    run.project_id,
                    run.id,
                    RunEvent::RunFinished {
                        message_id: message.id,
                        fragment_id: fragment.id,
                        title: title.to_owned(),
                        sandbox_url: fragment.sandbox_url.clone(),
                        file_count: u32::try_from(fragment.files.len()).unwrap_or(u32::MAX),
                    },
                )
                .await;
        }
    }

    /// The step limit: what the agent wrote so far becomes an unfinished version (so the next
    /// run, which starts from the latest version, continues from it), and the run is failed
    /// with a message that says so.
    async fn unfinished(
        &self,
        run: &Run,
        error: &AgentError,
        files: std::collections::BTreeMap<String, String>,
        sandbox_url: String,
        meta: MessageMeta,
    ) {
        let text = format!(
            "{error} What it wrote so far is kept as an unfinished version (shown in the preview), and a follow-up continues from it: say what is left, or just \"continue\"."
        );
        let stored = codeflux_db::insert_result(
            &self.0.db,
            run.project_id,
            text.clone(),
            NewFragment {
                sandbox_url,
                title: "Unfinished Work".into(),
                files,
            },
            meta,
        )
        .await;
        if let Err(e) = codeflux_db::mark_ended(
            &self.0.db,
            run.id,
            RunStatus::Failed,
            Some(text.clone()),
            None,
        )
        .await
        {
            tracing::error!(run = %run.id, error = %e, "recording a run out of steps");
        }
        tracing::warn!(run = %run.id, "run used all its steps; kept as an unfinished version");
        match stored {
            Ok(message) => {
                self.0
                    .bus
                    .emit_stored(
                        run.project_id,
                        run.id,
                        RunEvent::RunFailed {
                            message_id: message.id,
                            reason: text,
                            class: error.class().to_owned(),
                        },
                    )
                    .await;
            }
            Err(e) => {
                tracing::error!(error = %e, "storing an unfinished version");
                self.fail(
                    run,
                    &format!("{error} Its files could not be saved (database error)."),
                    error.class(),
                    MessageMeta::default(),
                )
                .await;
            }
        }
    }

    async fn cancelled(&self, run: &Run, meta: MessageMeta) {
        if let Err(e) = codeflux_db::mark_ended(
            &self.0.db,
            run.id,
            RunStatus::Cancelled,
            Some("cancelled".into()),
            None,
        )
        .await
        {
            tracing::error!(run = %run.id, error = %e, "recording a cancelled run");
        }
        self.record_error_with(
            run.project_id,
            "Stopped. The files written before the stop are kept in the sandbox; the last finished version is unchanged.",
            meta,
        )
        .await;
        self.0
            .bus
            .emit_stored(
                run.project_id,
                run.id,
                RunEvent::RunCancelled {
                    message_id: run.message_id,
                },
            )
            .await;
    }
}
