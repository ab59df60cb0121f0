//! The work of a project's runs, folded from their stored events, for the conversation.

use codeflux_protocol::{AppError, WorkLog};
use uuid::Uuid;

use crate::{Actor, Services, db_error};

/// Runs whose work is read per request (the newest).
const MAX_RUNS: usize = 60;
/// Events read per request, at most.
const MAX_EVENTS: u64 = 50_000;

impl Services {
    /// The steps of the project's runs that wrote an assistant message (the newest
    /// [`MAX_RUNS`]), oldest first.
    pub async fn work_logs(
        &self,
        actor: &Actor,
        project_id: &str,
    ) -> Result<Vec<WorkLog>, AppError> {
        let project = self.get_project(actor, project_id).await?;
        let messages = codeflux_db::list_messages(self.db(), project.id)
            .await
            .map_err(db_error)?;
        let mut runs: Vec<Uuid> = messages.iter().filter_map(|m| m.run_id).collect();
        runs.dedup();
        let runs = runs.split_off(runs.len().saturating_sub(MAX_RUNS));
        let events = codeflux_db::events_of_runs(self.db(), project.id, &runs, MAX_EVENTS)
            .await
            .map_err(db_error)?;
        let mut logs: Vec<WorkLog> = runs.iter().map(|r| WorkLog::new(*r)).collect();
        for e in &events {
            if let Some(log) = logs.iter_mut().find(|l| l.run_id == e.run_id) {
                log.apply(&e.event);
            }
        }
        Ok(logs)
    }
}
