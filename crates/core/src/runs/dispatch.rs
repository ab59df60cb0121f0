//! The node's side of the queue: it announces itself and beats its heartbeat, and claims runs
//! while it has free slots: a run whose node stopped renewing its lease first (a takeover),
//! else the oldest queued run of a project with nothing running.

use std::time::Duration;

use codeflux_db::cluster;
use codeflux_protocol::AppError;

use super::RunManager;
use crate::db_error;

/// How often the queue is looked at without a wake-up (runs queued on other nodes, leases that
/// ran out).
const POLL: Duration = Duration::from_secs(1);
/// The wait after a failed claim (a busy database).
const RETRY: Duration = Duration::from_millis(100);

impl RunManager {
    /// After a start: announces this node, then claims runs while it has free slots (queued
    /// runs, and runs whose node stopped renewing: those are resumed). Returns how many runs
    /// are queued or left by a stopped node now.
    pub async fn start(&self) -> Result<usize, AppError> {
        let db = &self.0.db;
        cluster::register_node(db, self.0.node.id, self.0.node.url.as_deref())
            .await
            .map_err(db_error)?;
        let waiting = codeflux_db::count_queued(db).await.map_err(db_error)?;
        tracing::info!(node = %self.0.node.id, url = ?self.0.node.url, queued = waiting, "node started");
        let beat = self.clone();
        tokio::spawn(async move { beat.heartbeat().await });
        if self.0.llm.is_ok() {
            let this = self.clone();
            tokio::spawn(async move { this.dispatch().await });
        }
        Ok(usize::try_from(waiting).unwrap_or(usize::MAX))
    }

    /// A clean stop: nothing more is claimed, the runs working here stop without writing more,
    /// and then their leases end, so another node (or this one after its restart) resumes them
    /// at once.
    pub async fn stop(&self) {
        self.0.stopping.cancel();
        if let Ok(local) = self.0.local.lock() {
            for l in local.values() {
                l.lost.cancel();
            }
        }
        // Their keepers go with them; a renewal under way must not outlive the release.
        for _ in 0..100 {
            if self.0.local.lock().map(|l| l.is_empty()).unwrap_or(true) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        match cluster::node_stopped(&self.0.db, self.0.node.id).await {
            Ok(n) if n > 0 => {
                tracing::info!(runs = n, "leases released for another node to resume")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "releasing this node's leases"),
        }
    }

    async fn heartbeat(&self) {
        let every = self.0.node.lease / 4;
        loop {
            tokio::time::sleep(every).await;
            if let Err(e) = cluster::heartbeat(&self.0.db, self.0.node.id).await {
                tracing::warn!(error = %e, "heartbeat");
            }
        }
    }

    async fn dispatch(&self) {
        while !self.0.stopping.is_cancelled() {
            let mut pause = POLL;
            while !self.0.stopping.is_cancelled()
                && let Ok(permit) = self.0.permits.clone().try_acquire_owned()
            {
                let until = cluster::now_ms() + self.lease_ms();
                match cluster::claim_run(&self.0.db, self.0.node.id, until).await {
                    Ok(Some(claim)) => {
                        let this = self.clone();
                        tokio::spawn(async move {
                            this.execute(claim).await;
                            drop(permit);
                            this.0.wake.notify_one();
                        });
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "claiming a run; trying again shortly");
                        pause = RETRY;
                        break;
                    }
                }
            }
            tokio::select! {
                () = self.0.stopping.cancelled() => {}
                () = self.0.wake.notified() => {}
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    pub(super) fn lease_ms(&self) -> i64 {
        i64::try_from(self.0.node.lease.as_millis()).unwrap_or(i64::MAX)
    }
}
