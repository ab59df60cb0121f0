//! The RunManager owns every agent run: a tokio task per run, one active run per project (a
//! follow-up sent during a run waits its turn), a global limit on concurrent runs,
//! cancellation, and recovery after a restart. A run's life never depends on an HTTP
//! connection: pages watch it through the event feed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use codeflux_agent::{AgentConfig, AgentError, EventSink, Outcome, Task};
use codeflux_db::{Db, NewFragment};
use codeflux_llm::{LlmClient, LlmError};
use codeflux_protocol::{AppError, MessageKind, Role, Run, RunEvent, RunStatus};
use codeflux_sandbox::SandboxProvider;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::db_error;
use crate::events::EventBus;

/// Characters of streamed text gathered into one stored event.
const TEXT_BATCH_CHARS: usize = 160;
/// Longest wait before gathered text is stored.
const TEXT_BATCH_MS: u128 = 120;

#[derive(Default)]
struct Worker {
    /// Bumped by every enqueue, so a worker about to stop sees new work.
    generation: u64,
    /// The running run and its cancel switch.
    current: Option<(Uuid, CancellationToken)>,
}

pub(crate) struct Inner {
    db: Db,
    bus: EventBus,
    llm: Result<LlmClient, LlmError>,
    sandboxes: Arc<dyn SandboxProvider>,
    agent: AgentConfig,
    permits: Arc<Semaphore>,
    max_concurrent: usize,
    workers: Mutex<HashMap<Uuid, Worker>>,
}

/// Owns the runs. Cheap to clone.
#[derive(Clone)]
pub struct RunManager(Arc<Inner>);

impl RunManager {
    pub fn new(
        db: Db,
        bus: EventBus,
        llm: Result<LlmClient, LlmError>,
        sandboxes: Arc<dyn SandboxProvider>,
        agent: AgentConfig,
        max_concurrent: usize,
    ) -> Self {
        let max_concurrent = max_concurrent.max(1);
        RunManager(Arc::new(Inner {
            db,
            bus,
            llm,
            sandboxes,
            agent,
            permits: Arc::new(Semaphore::new(max_concurrent)),
            max_concurrent,
            workers: Mutex::new(HashMap::new()),
        }))
    }

    /// Whether a model provider is configured (the page shows a banner otherwise).
    pub fn llm_problem(&self) -> Option<String> {
        self.0.llm.as_ref().err().map(|e| e.message.clone())
    }

    /// Accepts a run for the USER message `message_id` and starts it when it is its turn.
    pub async fn enqueue(&self, project_id: Uuid, message_id: Uuid) -> Result<Run, AppError> {
        let run = codeflux_db::insert_run(&self.0.db, project_id, message_id)
            .await
            .map_err(db_error)?;
        let position = codeflux_db::active_runs(&self.0.db, project_id)
            .await
            .map(|r| r.len().saturating_sub(1))
            .unwrap_or(0);
        self.0
            .bus
            .emit(
                project_id,
                run.id,
                RunEvent::RunQueued {
                    message_id,
                    position: u32::try_from(position).unwrap_or(u32::MAX),
                },
            )
            .await;
        if let Err(e) = &self.0.llm {
            // Nothing can run without a model: the answer says so at once (the message is
            // stored before this call returns), no worker needed.
            let reason = e.message.clone();
            self.fail(&run, &reason, "setup").await;
            return Ok(run);
        }
        self.kick(project_id);
        Ok(run)
    }

    /// Makes sure a worker serves the project's queue.
    fn kick(&self, project_id: Uuid) {
        let spawn = match self.0.workers.lock() {
            Ok(mut workers) => {
                let fresh = !workers.contains_key(&project_id);
                workers.entry(project_id).or_default().generation += 1;
                fresh
            }
            Err(_) => false,
        };
        if spawn {
            let this = self.clone();
            tokio::spawn(async move { this.serve(project_id).await });
        }
    }

    /// Runs the project's queued runs one after the other, then stops.
    async fn serve(&self, project_id: Uuid) {
        loop {
            let generation = self.generation(project_id);
            let next = match codeflux_db::next_queued_run(&self.0.db, project_id).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(error = %e, project = %project_id, "reading the run queue");
                    None
                }
            };
            let Some(run) = next else {
                if let Ok(mut workers) = self.0.workers.lock()
                    && workers
                        .get(&project_id)
                        .is_some_and(|w| w.generation == generation)
                {
                    workers.remove(&project_id);
                    return;
                }
                continue;
            };
            let token = CancellationToken::new();
            if let Ok(mut workers) = self.0.workers.lock() {
                workers.entry(project_id).or_default().current = Some((run.id, token.clone()));
            }
            if self.0.permits.available_permits() == 0 {
                self.0
                    .bus
                    .emit(project_id, run.id, RunEvent::Notice {
                        message: format!(
                            "Waiting for a free slot: {} runs are already working on this server.",
                            self.0.max_concurrent
                        ),
                    })
                    .await;
            }
            let permit = tokio::select! {
                p = self.0.permits.clone().acquire_owned() => p.ok(),
                () = token.cancelled() => None,
            };
            // A run cancelled while it waited was already marked by `cancel`.
            let still_queued = matches!(
                codeflux_db::find_run(&self.0.db, run.id).await,
                Ok(Some(r)) if r.status == RunStatus::Queued
            );
            if permit.is_some() && still_queued {
                self.execute(run, token).await;
            }
            drop(permit);
            if let Ok(mut workers) = self.0.workers.lock()
                && let Some(w) = workers.get_mut(&project_id)
            {
                w.current = None;
            }
        }
    }

    fn generation(&self, project_id: Uuid) -> u64 {
        self.0
            .workers
            .lock()
            .ok()
            .and_then(|w| w.get(&project_id).map(|w| w.generation))
            .unwrap_or(0)
    }

    /// Stops the project's running run and drops its queued ones. Returns how many.
    pub async fn cancel(&self, project_id: Uuid) -> Result<u32, AppError> {
        let active = codeflux_db::active_runs(&self.0.db, project_id)
            .await
            .map_err(db_error)?;
        let mut count = 0;
        for run in active.iter().filter(|r| r.status == RunStatus::Queued) {
            codeflux_db::mark_ended(
                &self.0.db,
                run.id,
                RunStatus::Cancelled,
                Some("cancelled".into()),
                None,
            )
            .await
            .map_err(db_error)?;
            self.record_error(project_id, "Stopped before it started.")
                .await;
            self.0
                .bus
                .emit(
                    project_id,
                    run.id,
                    RunEvent::RunCancelled {
                        message_id: run.message_id,
                    },
                )
                .await;
            count += 1;
        }
        let current = self
            .0
            .workers
            .lock()
            .ok()
            .and_then(|w| w.get(&project_id).and_then(|w| w.current.clone()));
        if let Some((run_id, token)) = current
            && active
                .iter()
                .any(|r| r.id == run_id && r.status == RunStatus::Running)
        {
            token.cancel();
            count += 1;
        }
        Ok(count)
    }

    /// The project's queued and running runs.
    pub async fn active(&self, project_id: Uuid) -> Result<Vec<Run>, AppError> {
        codeflux_db::active_runs(&self.0.db, project_id)
            .await
            .map_err(db_error)
    }

    /// After a start: runs that were working when the server stopped are interrupted (with an
    /// ERROR message saying so); queued runs start.
    pub async fn recover(&self) -> Result<(usize, usize), AppError> {
        let running = codeflux_db::runs_with_status(&self.0.db, RunStatus::Running)
            .await
            .map_err(db_error)?;
        for run in &running {
            codeflux_db::mark_ended(
                &self.0.db,
                run.id,
                RunStatus::Interrupted,
                Some("the server stopped".into()),
                None,
            )
            .await
            .map_err(db_error)?;
            self.record_error(
                run.project_id,
                "The server restarted while this request was being worked on, so it was interrupted. Send it again to retry.",
            )
            .await;
            self.0
                .bus
                .emit(
                    run.project_id,
                    run.id,
                    RunEvent::RunInterrupted {
                        message_id: run.message_id,
                    },
                )
                .await;
        }
        let queued = codeflux_db::runs_with_status(&self.0.db, RunStatus::Queued)
            .await
            .map_err(db_error)?;
        let mut projects: Vec<Uuid> = queued.iter().map(|r| r.project_id).collect();
        projects.dedup();
        for p in &projects {
            self.kick(*p);
        }
        if !running.is_empty() || !queued.is_empty() {
            tracing::info!(
                interrupted = running.len(),
                queued = queued.len(),
                "runs recovered"
            );
        }
        Ok((running.len(), queued.len()))
    }

    async fn record_error(&self, project_id: Uuid, text: &str) -> Option<Uuid> {
        match codeflux_db::insert_message(
            &self.0.db,
            project_id,
            text.to_owned(),
            Role::Assistant,
            MessageKind::Error,
        )
        .await
        {
            Ok(m) => Some(m.id),
            Err(e) => {
                tracing::error!(error = %e, "storing an ERROR message");
                None
            }
        }
    }

    /// One run, start to end. Every way out leaves a message and a final event.
    async fn execute(&self, run: Run, token: CancellationToken) {
        let db = &self.0.db;
        let project_id = run.project_id;
        if let Err(e) = codeflux_db::mark_running(db, run.id).await {
            tracing::error!(error = %e, run = %run.id, "marking a run as running");
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
        let result = tokio::select! {
            r = self.work(&run, &sink) => Some(r),
            () = token.cancelled() => None,
        };
        sink.flush().await;
        match result {
            Some(Ok((outcome, files, sandbox_url))) => {
                let stored = codeflux_db::insert_result(
                    db,
                    project_id,
                    outcome.reply.clone(),
                    NewFragment {
                        sandbox_url,
                        title: outcome.title.clone(),
                        files,
                    },
                )
                .await;
                match stored {
                    Ok(message) => {
                        let usage = serde_json::json!({
                            "prompt_tokens": outcome.usage.prompt_tokens,
                            "completion_tokens": outcome.usage.completion_tokens,
                            "requests": outcome.requests,
                            "chars_sent": outcome.chars_sent,
                            "iterations": outcome.iterations,
                        });
                        if let Err(e) = codeflux_db::mark_ended(
                            db,
                            run.id,
                            RunStatus::Finished,
                            None,
                            Some(usage),
                        )
                        .await
                        {
                            tracing::error!(run = %run.id, error = %e, "recording a finished run");
                        }
                        tracing::info!(run = %run.id, iterations = outcome.iterations, prompt_tokens = outcome.usage.prompt_tokens, "run finished");
                        if let Some(fragment) = message.fragment {
                            self.0
                                .bus
                                .emit_stored(
                                    project_id,
                                    run.id,
                                    RunEvent::RunFinished {
                                        message_id: message.id,
                                        fragment_id: fragment.id,
                                        title: outcome.title,
                                        sandbox_url: fragment.sandbox_url.clone(),
                                        file_count: u32::try_from(fragment.files.len())
                                            .unwrap_or(u32::MAX),
                                    },
                                )
                                .await;
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "storing a run's result");
                        self.fail(
                            &run,
                            "The result could not be saved (database error). Try again.",
                            "database",
                        )
                        .await;
                    }
                }
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
                self.fail(&run, &reason, class).await;
            }
            Some(Err(RunError::App(e))) => {
                tracing::warn!(run = %run.id, error = %e, "run failed");
                self.fail(&run, &e.message, "setup").await;
            }
            None => {
                if let Err(e) = codeflux_db::mark_ended(
                    db,
                    run.id,
                    RunStatus::Cancelled,
                    Some("cancelled".into()),
                    None,
                )
                .await
                {
                    tracing::error!(run = %run.id, error = %e, "recording a cancelled run");
                }
                self.record_error(project_id, "Stopped. The files written before the stop are kept in the sandbox; the last finished version is unchanged.").await;
                self.0
                    .bus
                    .emit_stored(
                        project_id,
                        run.id,
                        RunEvent::RunCancelled {
                            message_id: run.message_id,
                        },
                    )
                    .await;
            }
        }
    }

    async fn fail(&self, run: &Run, reason: &str, class: &str) {
        if let Err(e) = codeflux_db::mark_ended(
            &self.0.db,
            run.id,
            RunStatus::Failed,
            Some(reason.to_owned()),
            None,
        )
        .await
        {
            tracing::error!(run = %run.id, error = %e, "recording a failed run");
        }
        let message_id = self
            .record_error(run.project_id, reason)
            .await
            .unwrap_or(run.message_id);
        self.0
            .bus
            .emit_stored(
                run.project_id,
                run.id,
                RunEvent::RunFailed {
                    message_id,
                    reason: reason.to_owned(),
                    class: class.to_owned(),
                },
            )
            .await;
    }

    /// The work itself: the model, the sandbox, the agent.
    async fn work(
        &self,
        run: &Run,
        sink: &RunSink,
    ) -> Result<(Outcome, std::collections::BTreeMap<String, String>, String), RunError> {
        let llm = self
            .0
            .llm
            .as_ref()
            .map_err(|e| RunError::App(AppError::unavailable(e.message.clone())))?;
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
        let sandbox = self
            .0
            .sandboxes
            .open(
                project.id,
                project.template,
                latest.as_ref().map(|f| &f.files),
            )
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
        let outcome = codeflux_agent::run(llm, sandbox.as_ref(), sink, &task, &self.0.agent)
            .await
            .map_err(RunError::Agent)?;
        let files = sandbox.snapshot().await.map_err(|e| {
            RunError::App(AppError::internal(format!(
                "Reading the project's files failed: {e}"
            )))
        })?;
        Ok((outcome, files, sandbox.preview_url()))
    }
}

enum RunError {
    Agent(AgentError),
    App(AppError),
}

/// Forwards the agent's events to the bus, gathering streamed text into fewer events.
struct RunSink {
    bus: EventBus,
    project_id: Uuid,
    run_id: Uuid,
    text: Mutex<(String, std::time::Instant)>,
}

impl RunSink {
    fn new(bus: EventBus, project_id: Uuid, run_id: Uuid) -> Self {
        Self {
            bus,
            project_id,
            run_id,
            text: Mutex::new((String::new(), std::time::Instant::now())),
        }
    }

    fn take_text(&self) -> Option<String> {
        let mut guard = self.text.lock().ok()?;
        if guard.0.is_empty() {
            return None;
        }
        guard.1 = std::time::Instant::now();
        Some(std::mem::take(&mut guard.0))
    }

    async fn flush(&self) {
        if let Some(text) = self.take_text() {
            self.bus
                .emit(self.project_id, self.run_id, RunEvent::TextDelta { text })
                .await;
        }
    }
}

#[async_trait]
impl EventSink for RunSink {
    async fn emit(&self, event: RunEvent) {
        if let RunEvent::TextDelta { text } = event {
            let ready = match self.text.lock() {
                Ok(mut guard) => {
                    guard.0.push_str(&text);
                    guard.0.len() >= TEXT_BATCH_CHARS
                        || guard.1.elapsed().as_millis() >= TEXT_BATCH_MS
                }
                Err(_) => false,
            };
            if ready {
                self.flush().await;
            }
            return;
        }
        if matches!(event, RunEvent::TextReset { .. }) {
            // Text of a failed attempt that was not sent yet is simply dropped.
            if let Ok(mut guard) = self.text.lock() {
                guard.0.clear();
            }
        } else {
            self.flush().await;
        }
        self.bus.emit(self.project_id, self.run_id, event).await;
    }
}
