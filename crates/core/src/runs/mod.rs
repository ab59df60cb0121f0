//! The RunManager owns the agent runs this node executes. Runs are a durable queue in the
//! database: a node claims one when it has a free slot (`CODEFLUX_MAX_RUNS` per node), under a
//! lease it renews while the run works (`lease.rs`); a node that stops renewing (killed, frozen,
//! cut off) loses its runs to another node, which resumes them from their last checkpoint.
//! One active run per project across the cluster (the database enforces it). A run's life
//! never depends on an HTTP connection: pages watch it through the event feed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use codeflux_agent::{AgentConfig, AgentError};
use codeflux_db::{Db, MessageMeta};
use codeflux_llm::{LlmClient, LlmError};
use codeflux_protocol::{AppError, MessageKind, Role, Run, RunEvent, RunStatus};
use codeflux_sandbox::SandboxProvider;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::db_error;
use crate::events::EventBus;

mod checkpoint;
mod dispatch;
mod end;
mod execute;
mod lease;
mod sink;
mod work;

/// A node's identity in the cluster and how long its leases last.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// This process (a new one at every start).
    pub id: Uuid,
    /// How other nodes reach this one (CODEFLUX_NODE_URL), for preview forwarding.
    pub url: Option<String>,
    /// How long a lease holds without renewal (CODEFLUX_LEASE_SECS); renewed every third of it.
    pub lease: Duration,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            id: Uuid::now_v7(),
            url: None,
            lease: Duration::from_secs(10),
        }
    }
}

/// A run executing on this node.
struct Local {
    /// The lease generation of this execution.
    generation: i64,
    /// The person asked to stop it.
    cancel: CancellationToken,
    /// This node no longer holds it (lease lost, or this node stops): stop without writing.
    lost: CancellationToken,
}

pub(crate) struct Inner {
    db: Db,
    bus: EventBus,
    llm: Result<LlmClient, LlmError>,
    sandboxes: Arc<dyn SandboxProvider>,
    agent: AgentConfig,
    node: NodeConfig,
    permits: Arc<Semaphore>,
    max_concurrent: usize,
    local: Mutex<HashMap<Uuid, Local>>,
    /// Wakes the dispatcher (a run was queued here, or a slot was freed).
    wake: Notify,
    /// The node is stopping: claim nothing more.
    stopping: CancellationToken,
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
        node: NodeConfig,
    ) -> Self {
        let max_concurrent = max_concurrent.max(1);
        RunManager(Arc::new(Inner {
            db,
            bus,
            llm,
            sandboxes,
            agent,
            node,
            permits: Arc::new(Semaphore::new(max_concurrent)),
            max_concurrent,
            local: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            stopping: CancellationToken::new(),
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

    /// This node.
    pub fn node(&self) -> &NodeConfig {
        &self.0.node
    }

    /// Accepts a run for the USER message `message_id` (with the model asked for, None: the
    /// default); a node with a free slot claims it.
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
            // stored before this call returns).
            let reason = e.message.clone();
            self.fail_unclaimed(&run, &reason).await;
            return Ok(run);
        }
        if position == 0 && self.0.permits.available_permits() == 0 {
            self.0
                .bus
                .emit(
                    project_id,
                    run.id,
                    RunEvent::Notice {
                        message: format!(
                            "Waiting for a free slot: {} runs are already working on this server.",
                            self.0.max_concurrent
                        ),
                    },
                )
                .await;
        }
        self.0.wake.notify_one();
        Ok(run)
    }

    /// Stops the project's running run (on whichever node) and drops its queued ones. Returns
    /// how many.
    pub async fn cancel(&self, project_id: Uuid) -> Result<u32, AppError> {
        let active = codeflux_db::active_runs(&self.0.db, project_id)
            .await
            .map_err(db_error)?;
        let mut count = 0;
        for run in &active {
            if run.status == RunStatus::Queued
                && codeflux_db::cancel_queued(&self.0.db, run.id)
                    .await
                    .map_err(db_error)?
            {
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
                continue;
            }
            // Running, or it started after the queue was read: stop it as a running one.
            // Told through the database (the node running it sees it when it renews its
            // lease), and at once when it runs here.
            let asked = codeflux_db::cluster::request_cancel(&self.0.db, run.id)
                .await
                .map_err(db_error)?;
            let here = self
                .0
                .local
                .lock()
                .ok()
                .and_then(|l| l.get(&run.id).map(|r| r.cancel.clone()));
            if let Some(token) = &here {
                token.cancel();
            }
            if asked || here.is_some() {
                count += 1;
            }
        }
        Ok(count)
    }

    /// The project's queued and running runs.
    pub async fn active(&self, project_id: Uuid) -> Result<Vec<Run>, AppError> {
        codeflux_db::active_runs(&self.0.db, project_id)
            .await
            .map_err(db_error)
    }

    /// Nodes whose heartbeat is fresh (three renewal periods).
    pub async fn nodes_alive(&self) -> Result<usize, AppError> {
        let fresh = codeflux_db::cluster::now_ms() - self.heartbeat_timeout_ms();
        Ok(codeflux_db::cluster::nodes(&self.0.db)
            .await
            .map_err(db_error)?
            .iter()
            .filter(|n| !n.stopped && n.heartbeat_ms >= fresh)
            .count())
    }

    /// Another live node that holds the project's sandbox, with its URL (None: this node, or
    /// nobody alive: the preview is served here).
    pub async fn sandbox_elsewhere(
        &self,
        project_id: Uuid,
    ) -> Result<Option<(Uuid, String)>, AppError> {
        let home = codeflux_db::cluster::sandbox_home(&self.0.db, project_id)
            .await
            .map_err(db_error)?;
        let fresh = codeflux_db::cluster::now_ms() - self.heartbeat_timeout_ms();
        Ok(home.and_then(|n| {
            (n.id != self.0.node.id && !n.stopped && n.heartbeat_ms >= fresh)
                .then_some(n.url.map(|u| (n.id, u)))
                .flatten()
        }))
    }

    /// Records that this node holds the project's live sandbox.
    pub async fn hold_sandbox(&self, project_id: Uuid) {
        if let Err(e) =
            codeflux_db::cluster::set_sandbox_home(&self.0.db, project_id, self.0.node.id).await
        {
            tracing::warn!(project = %project_id, error = %e, "recording where the sandbox runs");
        }
    }

    fn heartbeat_timeout_ms(&self) -> i64 {
        i64::try_from(self.0.node.lease.as_millis()).unwrap_or(i64::MAX)
    }

    async fn record_error(&self, project_id: Uuid, text: &str) -> Option<Uuid> {
        match codeflux_db::insert_message_with(
            &self.0.db,
            project_id,
            text.to_owned(),
            Role::Assistant,
            MessageKind::Error,
            MessageMeta::default(),
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

    /// Ends a run that no node claimed (no model configured here): failed, with an ERROR
    /// message saying why, and the final event; nothing if a node claimed it meanwhile.
    async fn fail_unclaimed(&self, run: &Run, reason: &str) {
        match codeflux_db::fail_queued(&self.0.db, run.id, reason).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => tracing::error!(run = %run.id, error = %e, "recording a failed run"),
        }
        let message_id = match codeflux_db::insert_message_with(
            &self.0.db,
            run.project_id,
            reason.to_owned(),
            Role::Assistant,
            MessageKind::Error,
            MessageMeta {
                run_id: Some(run.id),
                ..MessageMeta::default()
            },
        )
        .await
        {
            Ok(m) => m.id,
            Err(e) => {
                tracing::error!(error = %e, "storing an ERROR message");
                run.message_id
            }
        };
        self.0
            .bus
            .emit_stored(
                run.project_id,
                run.id,
                RunEvent::RunFailed {
                    message_id,
                    reason: reason.to_owned(),
                    class: "setup".to_owned(),
                },
                None,
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
