//! Keeping a run's lease while it works: renewed every third of its time; a cancel asked on
//! any node is seen here; a lease that another node took, or that this node cannot be sure
//! it still holds (no renewal stored before the lease's deadline), stops the work without
//! another write.

use std::time::{Duration, Instant};

use codeflux_db::Db;
use codeflux_db::cluster::{self, Fence, Lease};
use tokio_util::sync::CancellationToken;

/// The renewing task; aborted when dropped (also when the run's task unwinds from a panic, so
/// a crashed execution stops renewing and another node resumes the run).
pub(super) struct Keeper(tokio::task::JoinHandle<()>);

impl Drop for Keeper {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Renews `fence`'s lease until the returned keeper is dropped.
pub(super) fn keep(
    db: Db,
    fence: Fence,
    lease: Duration,
    cancel: CancellationToken,
    lost: CancellationToken,
) -> Keeper {
    Keeper(tokio::spawn(async move {
        let every = lease / 3;
        let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        // Until when the lease surely holds: the claim set it a full lease ahead.
        let mut held_until = Instant::now() + lease;
        loop {
            tokio::time::sleep(every).await;
            let sent = Instant::now();
            let until = cluster::now_ms() + lease_ms;
            let renewed =
                tokio::time::timeout(every, cluster::renew_lease(&db, fence, until)).await;
            match renewed {
                Ok(Ok(Lease::Held { cancel: asked })) => {
                    held_until = sent + lease;
                    if asked && !cancel.is_cancelled() {
                        tracing::info!(run = %fence.run_id, "a stop was asked on another node");
                        cancel.cancel();
                    }
                }
                Ok(Ok(Lease::Lost)) => {
                    tracing::warn!(run = %fence.run_id, "the run's lease was taken over: stopping here");
                    lost.cancel();
                    return;
                }
                Ok(Err(e)) => {
                    tracing::warn!(run = %fence.run_id, error = %e, "renewing the run's lease");
                }
                Err(_) => {
                    tracing::warn!(run = %fence.run_id, "renewing the run's lease timed out");
                }
            }
            // Before the next renewal could land the lease may have run out: another node may
            // hold it by then, so stop rather than work twice.
            if Instant::now() + every >= held_until {
                tracing::warn!(run = %fence.run_id, "the lease could not be renewed in time: stopping here");
                lost.cancel();
                return;
            }
        }
    }))
}
