//! Keeping a run's lease while it works: renewed every third of its time; a cancel asked on
//! any node is seen here; a lease that another node took (or that could not be renewed for its
//! whole time) stops the work without another write.

use std::time::{Duration, Instant};

use codeflux_db::Db;
use codeflux_db::cluster::{self, Fence, Lease};
use tokio_util::sync::CancellationToken;

/// Renews `fence`'s lease until the returned task is aborted.
pub(super) fn keep(
    db: Db,
    fence: Fence,
    lease: Duration,
    cancel: CancellationToken,
    lost: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let every = lease / 3;
        let mut last_ok = Instant::now();
        loop {
            tokio::time::sleep(every).await;
            let until = cluster::now_ms() + i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
            match cluster::renew_lease(&db, fence, until).await {
                Ok(Lease::Held { cancel: asked }) => {
                    last_ok = Instant::now();
                    if asked && !cancel.is_cancelled() {
                        tracing::info!(run = %fence.run_id, "a stop was asked on another node");
                        cancel.cancel();
                    }
                }
                Ok(Lease::Lost) => {
                    tracing::warn!(run = %fence.run_id, "the run's lease was taken over: stopping here");
                    lost.cancel();
                    return;
                }
                Err(e) => {
                    tracing::warn!(run = %fence.run_id, error = %e, "renewing the run's lease");
                    // Past its time another node may hold it: stop rather than work twice.
                    if last_ok.elapsed() >= lease {
                        lost.cancel();
                        return;
                    }
                }
            }
        }
    })
}
