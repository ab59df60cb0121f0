//! The RunManager owns every agent run: a tokio task per run, one active run per project (a
//! follow-up sent during a run waits its turn), a global limit on concurrent runs,
//! cancellation, and recovery after a restart. A run's life never depends on an HTTP
//! connection: pages watch it through the event feed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use codeflux_agent::{AgentConfig, AgentError};
use codeflux_db::{Db, MessageMeta};
use codeflux_llm::{LlmClient, LlmError};
use codeflux_protocol::{AppError, MessageKind, Role, Run, RunEvent, RunStatus};
use codeflux_sandbox::SandboxProvider;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::db_error;
use crate::events::EventBus;

mod execute;
mod sink;
mod work;

/// How often a project's queue is looked at while another node runs one of its runs.
const OTHER_NODE_POLL: std::time::Duration = std::time::Duration::from_millis(500);

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

    /// The configured model client, if a provider is configured.
    pub fn llm(&self) -> Result<&LlmClient, &LlmError> {
        self.0.llm.as_ref()
    }

    /// Accepts a run for the USER message `message_id` (with the model asked for, None: the
    /// default) and starts it when it is its turn.
    pub async fn enqueue(
        &self,
        project_id: Uuid,
        message_id: Uuid,
        model: Option<String>,
    ) -> Result<Run, AppError> {
        let run = codeflux_db::insert_run(&self.0.db, project_id, message_id, model)
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
            self.fail(&run, &reason, "setup", MessageMeta::default())
                .await;
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
            // One active run per project across every process on the database: a run of this
            // project working on another node goes first (this worker's own runs are never
            // running here: it runs them one at a time).
            if self.running_elsewhere(project_id).await {
                tokio::time::sleep(OTHER_NODE_POLL).await;
                continue;
            }
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

    /// Whether a run of the project is working (in the database) that this process does not
    /// run.
    async fn running_elsewhere(&self, project_id: Uuid) -> bool {
        match codeflux_db::active_runs(&self.0.db, project_id).await {
            Ok(active) => active.iter().any(|r| r.status == RunStatus::Running),
            Err(e) => {
                tracing::warn!(error = %e, project = %project_id, "reading the project's runs");
                false
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
        let mut started = Vec::new();
        for run in active.iter().filter(|r| r.status == RunStatus::Queued) {
            if !codeflux_db::cancel_queued(&self.0.db, run.id)
                .await
                .map_err(db_error)?
            {
                // It started after the queue was read: stop it as a running one.
                started.push(run.id);
                continue;
            }
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
            && active.iter().any(|r| {
                r.id == run_id && (r.status == RunStatus::Running || started.contains(&r.id))
            })
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
        self.record_error_with(project_id, text, MessageMeta::default())
            .await
    }

    async fn record_error_with(
        &self,
        project_id: Uuid,
        text: &str,
        meta: MessageMeta,
    ) -> Option<Uuid> {
        match codeflux_db::insert_message_with(
            &self.0.db,
            project_id,
            text.to_owned(),
            Role::Assistant,
            MessageKind::Error,
            meta,
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

    /// Ends a run as failed: the run's record, an ERROR message saying why, the final event.
    async fn fail(&self, run: &Run, reason: &str, class: &str, meta: MessageMeta) {
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
            .record_error_with(
                run.project_id,
                reason,
                MessageMeta {
                    run_id: Some(run.id),
                    ..meta
                },
            )
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
}

/// Why a run's work ended without a result.
enum RunError {
    Agent(AgentError),
    App(AppError),
    /// The step limit: what the agent wrote so far, to keep as an unfinished version.
    Unfinished {
        error: AgentError,
        files: std::collections::BTreeMap<String, String>,
        sandbox_url: String,
    },
}
