//! Run events: numbered per project, stored, then broadcast; read back as a gap-free feed.
//!
//! One writer task owns the numbering: events reach it over a bounded channel in the order they
//! were emitted, get the project's next sequence number, are inserted into `run_events` and
//! only then broadcast. A reader subscribes to the broadcast first, then reads the table after
//! its last seen number, then follows the broadcast, skipping numbers it has already seen: no
//! gap and no duplicate, even across reconnects (Last-Event-ID).

use std::collections::{HashMap, VecDeque};

use codeflux_db::Db;
use codeflux_protocol::{RunEvent, StoredEvent};
use tokio::sync::{broadcast, mpsc, oneshot};
use uuid::Uuid;

/// How many events a slow reader may fall behind before it re-reads from the table.
const BROADCAST_CAPACITY: usize = 1024;
/// Events read from the table per query.
const PAGE: u64 = 500;

struct Emitted {
    project_id: Uuid,
    run_id: Uuid,
    event: RunEvent,
    stored: Option<oneshot::Sender<i64>>,
}

/// Sends events to the writer task and hands out feeds.
#[derive(Clone)]
pub struct EventBus {
    db: Db,
    tx: mpsc::Sender<Emitted>,
    live: broadcast::Sender<StoredEvent>,
}

impl EventBus {
    /// Starts the writer task.
    pub fn start(db: Db) -> EventBus {
        let (tx, rx) = mpsc::channel(256);
        let (live, _) = broadcast::channel(BROADCAST_CAPACITY);
        tokio::spawn(writer(db.clone(), rx, live.clone()));
        EventBus { db, tx, live }
    }

    /// Queues an event; returns once the writer has accepted it (not yet stored).
    pub async fn emit(&self, project_id: Uuid, run_id: Uuid, event: RunEvent) {
        if self
            .tx
            .send(Emitted {
                project_id,
                run_id,
                event,
                stored: None,
            })
            .await
            .is_err()
        {
            tracing::error!(project = %project_id, "the event writer is gone: an event was lost");
        }
    }

    /// Queues an event and waits until it is stored and broadcast; returns its number.
    pub async fn emit_stored(
        &self,
        project_id: Uuid,
        run_id: Uuid,
        event: RunEvent,
    ) -> Option<i64> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Emitted {
                project_id,
                run_id,
                event,
                stored: Some(done),
            })
            .await
            .ok()?;
        wait.await.ok()
    }

    /// Every event of `project_id` numbered above `after`, then the live ones.
    pub fn feed(&self, project_id: Uuid, after: i64) -> EventFeed {
        EventFeed {
            db: self.db.clone(),
            project_id,
            last: after,
            backlog: VecDeque::new(),
            live: self.live.subscribe(),
            caught_up: false,
        }
    }
}

async fn writer(db: Db, mut rx: mpsc::Receiver<Emitted>, live: broadcast::Sender<StoredEvent>) {
    let mut last_seq: HashMap<Uuid, i64> = HashMap::new();
    while let Some(e) = rx.recv().await {
        let seq = match last_seq.get(&e.project_id) {
            Some(s) => s + 1,
            None => match codeflux_db::max_seq(&db, e.project_id).await {
                Ok(s) => s + 1,
                Err(err) => {
                    tracing::error!(error = %err, "reading the last event number");
                    continue;
                }
            },
        };
        let at = codeflux_db::now();
        if let Err(err) =
            codeflux_db::insert_event(&db, e.project_id, seq, e.run_id, at, &e.event).await
        {
            // The number may be taken (the cache is stale): re-read it next time.
            tracing::error!(error = %err, project = %e.project_id, "storing a run event");
            last_seq.remove(&e.project_id);
            continue;
        }
        last_seq.insert(e.project_id, seq);
        // No live subscriber is normal (nobody watches): the event is stored anyway.
        let _ = live.send(StoredEvent {
            seq,
            project_id: e.project_id,
            run_id: e.run_id,
            at,
            event: e.event,
        });
        if let Some(done) = e.stored {
            let _ = done.send(seq);
        }
    }
}

/// A project's events in order: the stored ones after a number, then the live ones.
pub struct EventFeed {
    db: Db,
    project_id: Uuid,
    last: i64,
    backlog: VecDeque<StoredEvent>,
    live: broadcast::Receiver<StoredEvent>,
    caught_up: bool,
}

impl EventFeed {
    /// The next event; `None` only when the bus is gone.
    pub async fn next(&mut self) -> Option<StoredEvent> {
        loop {
            if let Some(e) = self.backlog.pop_front() {
                if e.seq > self.last {
                    self.last = e.seq;
                    return Some(e);
                }
                continue;
            }
            if !self.caught_up {
                match codeflux_db::events_after(&self.db, self.project_id, self.last, PAGE).await {
                    Ok(page) => {
                        self.caught_up = (page.len() as u64) < PAGE;
                        self.backlog.extend(page);
                        continue;
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "reading stored events; following live ones");
                        self.caught_up = true;
                    }
                }
            }
            match self.live.recv().await {
                Ok(e) if e.project_id == self.project_id => {
                    if e.seq == self.last + 1 {
                        self.last = e.seq;
                        return Some(e);
                    }
                    if e.seq > self.last + 1 {
                        // Something was missed (e.g. stored between our read and subscribe).
                        self.backlog.push_back(e);
                        self.caught_up = false;
                        let mut missing = self.load_gap().await;
                        missing.extend(self.backlog.drain(..));
                        self.backlog = missing;
                        self.caught_up = true;
                    }
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => self.caught_up = false,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    async fn load_gap(&self) -> VecDeque<StoredEvent> {
        codeflux_db::events_after(&self.db, self.project_id, self.last, PAGE)
            .await
            .map(VecDeque::from)
            .unwrap_or_default()
    }

    /// The number of the last event handed out.
    pub fn last_seq(&self) -> i64 {
        self.last
    }
}
