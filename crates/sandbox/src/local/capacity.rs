//! The cap on live sandboxes, the idle reaper and stopping: each decides *and* stops under the
//! project's slot (see [`super::provider`]).

use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use super::provider::{LocalProvider, Shared};
use super::runtime::Runtime;
use crate::SandboxError;

/// How long a run waits for a place among the live sandboxes.
const RUN_WAIT: Duration = Duration::from_secs(600);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Purpose {
    Run,
    Preview,
}

#[derive(Default)]
pub(super) struct Registry {
    pub live: std::collections::HashMap<Uuid, Arc<Runtime>>,
    pub creating: usize,
}

/// A reserved place among the live sandboxes, given back unless a runtime took it.
pub(super) struct Seat<'a> {
    shared: &'a Shared,
    taken: bool,
}

impl Seat<'_> {
    pub(super) fn commit(mut self, id: Uuid, rt: Arc<Runtime>) {
        if let Ok(mut r) = self.shared.registry.lock() {
            r.creating = r.creating.saturating_sub(1);
            r.live.insert(id, rt);
        }
        self.taken = true;
    }
}

impl Drop for Seat<'_> {
    fn drop(&mut self) {
        if !self.taken
            && let Ok(mut r) = self.shared.registry.lock()
        {
            r.creating = r.creating.saturating_sub(1);
        }
    }
}

impl LocalProvider {
    /// A place among the live sandboxes: free, or made by stopping an unused one.
    pub(super) async fn reserve(&self, purpose: Purpose) -> Result<Seat<'_>, SandboxError> {
        let cap = self.0.cfg.max_sandboxes.max(1);
        let grace = self.0.cfg.evict_grace.as_secs();
        let started = std::time::Instant::now();
        loop {
            let candidates: Vec<Uuid> = {
                let Ok(mut reg) = self.0.registry.lock() else {
                    return Err(SandboxError::Setup("sandbox registry poisoned".into()));
                };
                reg.live.retain(|_, rt| !rt.is_stopped());
                if reg.live.len() + reg.creating < cap {
                    reg.creating += 1;
                    return Ok(Seat {
                        shared: &self.0,
                        taken: false,
                    });
                }
                let mut c: Vec<(u64, Uuid)> = reg
                    .live
                    .iter()
                    .filter(|(_, rt)| evictable(rt, purpose, grace))
                    .map(|(id, rt)| (rt.last_used(), *id))
                    .collect();
                c.sort();
                c.into_iter().map(|(_, id)| id).collect()
            };
            for victim in candidates {
                if self.evict(victim, purpose, grace).await {
                    break;
                }
            }
            let free = self
                .0
                .registry
                .lock()
                .map(|r| r.live.len() + r.creating < cap)
                .unwrap_or(false);
            if free {
                continue;
            }
            if purpose == Purpose::Preview || started.elapsed() > RUN_WAIT {
                return Err(SandboxError::Busy(format!(
                    "The server already runs {cap} sandboxes (CODEFLUX_MAX_SANDBOXES) and all are in use. Try again in a moment."
                )));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Stops `victim`'s runtime if its slot is free and it is still unused. Whether it did.
    async fn evict(&self, victim: Uuid, purpose: Purpose, grace: u64) -> bool {
        let slot = self.slot(victim);
        let Ok(mut s) = slot.try_lock() else {
            return false;
        };
        let Some(rt) = s.rt.clone() else {
            return false;
        };
        if !evictable(&rt, purpose, grace) {
            return false;
        }
        s.rt = None;
        self.unregister(victim, &rt);
        tracing::info!(project = %victim, "stopping a sandbox to make room for another");
        rt.shutdown().await;
        true
    }

    pub(super) fn unregister(&self, id: Uuid, rt: &Arc<Runtime>) {
        if let Ok(mut r) = self.0.registry.lock()
            && r.live.get(&id).is_some_and(|x| Arc::ptr_eq(x, rt))
        {
            r.live.remove(&id);
        }
    }

    pub(super) async fn stop_runtime(&self, id: Uuid) {
        let slot = self.slot(id);
        let mut s = slot.lock().await;
        if let Some(rt) = s.rt.take() {
            self.unregister(id, &rt);
            rt.shutdown().await;
        }
    }

    pub(super) async fn reap_idle(&self) {
        let idle = self.0.cfg.idle_stop.as_secs();
        let candidates: Vec<Uuid> = match self.0.registry.lock() {
            Ok(r) => r
                .live
                .iter()
                .filter(|(_, rt)| rt.runs() == 0 && rt.idle_secs() > idle)
                .map(|(id, _)| *id)
                .collect(),
            Err(_) => Vec::new(),
        };
        for id in candidates {
            let slot = self.slot(id);
            let Ok(mut s) = slot.try_lock() else { continue };
            // Decided again under the slot: a run may have taken it meanwhile.
            let Some(rt) = s.rt.clone() else { continue };
            if rt.runs() > 0 || rt.idle_secs() <= idle {
                continue;
            }
            s.rt = None;
            self.unregister(id, &rt);
            tracing::info!(project = %id, "stopping an idle sandbox");
            rt.shutdown().await;
        }
    }
}

/// Whether a runtime may be stopped to make room.
fn evictable(rt: &Runtime, purpose: Purpose, grace: u64) -> bool {
    if rt.runs() > 0 || rt.is_stopped() {
        return false;
    }
    purpose == Purpose::Run || (rt.conns() == 0 && rt.idle_secs() >= grace)
}
