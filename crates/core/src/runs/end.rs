//! How a run ends: the agent's outcome stored as a message and version, an unfinished version
//! kept at the step limit, a failure, a stop, or an interruption told. Each is one transaction
//! fenced by the run's lease (the run's record, its message), then the final event. An
//! execution that lost its lease writes nothing: the node that holds the run ends it.

use codeflux_agent::AgentError;
use codeflux_db::cluster::{EndMessage, Fence};
use codeflux_db::{DbError, MessageMeta, NewFragment};
use codeflux_protocol::{Message, MessageKind, Run, RunEvent, RunStatus};

use super::RunManager;
use super::work::Done;

/// What storing a run's end did.
enum Ended {
    Stored(Box<Message>),
    /// Another execution holds the run: nothing written.
    Fenced,
    /// The database failed (logged).
    Failed,
}

impl RunManager {
    async fn end(
        &self,
        run: &Run,
        fence: Fence,
        status: RunStatus,
        error: Option<String>,
        usage: Option<serde_json::Value>,
        message: EndMessage,
    ) -> Ended {
        match codeflux_db::cluster::end_run(
            &self.0.db,
            fence,
            status,
            error,
            usage,
            Some((run.project_id, message)),
        )
        .await
        {
            Ok(Some(m)) => Ended::Stored(Box::new(m)),
            Ok(None) => Ended::Failed,
            Err(DbError::Fenced) => {
                tracing::info!(run = %run.id, "the run is held by another node now: its end is theirs to store");
                Ended::Fenced
            }
            Err(e) => {
                tracing::error!(run = %run.id, error = %e, status = status.as_str(), "storing the end of a run");
                Ended::Failed
            }
        }
    }

    async fn final_event(&self, run: &Run, fence: Fence, event: RunEvent) {
        self.0
            .bus
            .emit_stored(run.project_id, run.id, event, Some(fence))
            .await;
    }

    /// Stores the reply and its version, ends the run.
    pub(super) async fn finished(&self, run: &Run, fence: Fence, done: Done, meta: MessageMeta) {
        let Done {
            outcome,
            files,
            sandbox_url,
        } = done;
        let usage = serde_json::json!({
            "prompt_tokens": outcome.usage.prompt_tokens,
            "completion_tokens": outcome.usage.completion_tokens,
            "cost_usd": meta.usage.and_then(|u| u.cost_usd),
            "requests": outcome.requests,
            "chars_sent": outcome.chars_sent,
            "iterations": outcome.iterations,
            "checks_passed": outcome.checks.as_ref().map(|c| c.passed()),
        });
        let message = EndMessage {
            content: outcome.reply.clone(),
            kind: MessageKind::Result,
            fragment: Some(NewFragment {
                sandbox_url,
                title: outcome.title.clone(),
                files,
            }),
            meta: MessageMeta {
                checks: outcome.checks.clone(),
                ..meta
            },
        };
        match self
            .end(run, fence, RunStatus::Finished, None, Some(usage), message)
            .await
        {
            Ended::Stored(message) => {
                tracing::info!(
                    run = %run.id,
                    iterations = outcome.iterations,
                    prompt_tokens = outcome.usage.prompt_tokens,
                    checks_passed = ?outcome.checks.as_ref().map(|c| c.passed()),
                    "run finished"
                );
                self.announce_version(run, fence, &message, &outcome.title)
                    .await;
            }
            Ended::Fenced => {}
            Ended::Failed => {
                self.fail(
                    run,
                    fence,
                    "The result could not be saved (database error). Try again.",
                    "database",
                    MessageMeta::default(),
                )
                .await;
            }
        }
    }

    async fn announce_version(&self, run: &Run, fence: Fence, message: &Message, title: &str) {
        if let Some(fragment) = &message.fragment {
            self.final_event(
                run,
                fence,
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
    pub(super) async fn unfinished(
        &self,
        run: &Run,
        fence: Fence,
        error: &AgentError,
        files: std::collections::BTreeMap<String, String>,
        sandbox_url: String,
        meta: MessageMeta,
    ) {
        let text = format!(
            "{error} What it wrote so far is kept as an unfinished version (shown in the preview), and a follow-up continues from it: say what is left, or just \"continue\"."
        );
        let message = EndMessage {
            content: text.clone(),
            kind: MessageKind::Result,
            fragment: Some(NewFragment {
                sandbox_url,
                title: "Unfinished Work".into(),
                files,
            }),
            meta,
        };
        tracing::warn!(run = %run.id, "run used all its steps; kept as an unfinished version");
        match self
            .end(
                run,
                fence,
                RunStatus::Failed,
                Some(text.clone()),
                None,
                message,
            )
            .await
        {
            Ended::Stored(message) => {
                self.final_event(
                    run,
                    fence,
                    RunEvent::RunFailed {
                        message_id: message.id,
                        reason: text,
                        class: error.class().to_owned(),
                    },
                )
                .await;
            }
            Ended::Fenced => {}
            Ended::Failed => {
                self.fail(
                    run,
                    fence,
                    &format!("{error} Its files could not be saved (database error)."),
                    error.class(),
                    MessageMeta::default(),
                )
                .await;
            }
        }
    }

    /// Ends a run as failed: the run's record, an ERROR message saying why, the final event.
    pub(super) async fn fail(
        &self,
        run: &Run,
        fence: Fence,
        reason: &str,
        class: &str,
        meta: MessageMeta,
    ) {
        let message = EndMessage {
            content: reason.to_owned(),
            kind: MessageKind::Error,
            fragment: None,
            meta: MessageMeta {
                run_id: Some(run.id),
                ..meta
            },
        };
        let message_id = match self
            .end(
                run,
                fence,
                RunStatus::Failed,
                Some(reason.to_owned()),
                None,
                message,
            )
            .await
        {
            Ended::Stored(m) => m.id,
            // Not stored: the run stays "running", its lease runs out and a node ends it then;
            // announcing an end now would be undone.
            Ended::Fenced | Ended::Failed => return,
        };
        self.final_event(
            run,
            fence,
            RunEvent::RunFailed {
                message_id,
                reason: reason.to_owned(),
                class: class.to_owned(),
            },
        )
        .await;
    }

    pub(super) async fn cancelled(&self, run: &Run, fence: Fence, meta: MessageMeta) {
        let message = EndMessage {
            content: "Stopped. The files written before the stop are kept in the sandbox; the last finished version is unchanged.".into(),
            kind: MessageKind::Error,
            fragment: None,
            meta,
        };
        if let Ended::Fenced = self
            .end(
                run,
                fence,
                RunStatus::Cancelled,
                Some("cancelled".into()),
                None,
                message,
            )
            .await
        {
            return;
        }
        self.final_event(
            run,
            fence,
            RunEvent::RunCancelled {
                message_id: run.message_id,
            },
        )
        .await;
    }

    /// A run taken over too many times (every node working on it stopped): it ends here.
    pub(super) async fn interrupted(&self, run: &Run, fence: Fence, resumes: i32) {
        let message = EndMessage {
            content: format!(
                "The servers working on this request stopped {resumes} times in a row, so it was interrupted. Send it again to retry."
            ),
            kind: MessageKind::Error,
            fragment: None,
            meta: MessageMeta {
                run_id: Some(run.id),
                ..MessageMeta::default()
            },
        };
        if !matches!(
            self.end(
                run,
                fence,
                RunStatus::Interrupted,
                Some("its servers kept stopping".into()),
                None,
                message,
            )
            .await,
            Ended::Stored(_)
        ) {
            return;
        }
        self.final_event(
            run,
            fence,
            RunEvent::RunInterrupted {
                message_id: run.message_id,
            },
        )
        .await;
    }
}
