//! Run events: numbered per project, stored, then broadcast; read back as a gap-free feed.
//!
//! One writer task per process stores events in the order they were emitted; the database
//! gives each its project's next number (`append_event`: gap-free per project, whichever
//! process writes), and only then is it broadcast. A reader subscribes to the broadcast first, then reads the table after
//! its last seen number, then follows the broadcast, skipping numbers it has already seen: no
//! gap and no duplicate, even across reconnects (Last-Event-ID).

use std::collections::VecDeque;

use std::time::Duration;

use codeflux_db::cluster::Fence;
use codeflux_db::notify::EVENTS_CHANNEL;
use codeflux_db::{Db, DbError};
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
    /// Stored only while this lease holds the run.
    fence: Option<Fence>,
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
    /// Starts the writer task, and on PostgreSQL the relay of other processes' events (`node`:
    /// this process, so its own announcements are not relayed back).
    pub fn start(db: Db, node: Uuid) -> EventBus {
        let (tx, rx) = mpsc::channel(256);
        let (live, _) = broadcast::channel(BROADCAST_CAPACITY);
        tokio::spawn(writer(db.clone(), node, rx, live.clone()));
        tokio::spawn(relay(db.clone(), node, live.clone()));
        EventBus { db, tx, live }
    }

    /// Queues an event; returns once the writer has accepted it (not yet stored).
    pub async fn emit(&self, project_id: Uuid, run_id: Uuid, event: RunEvent) {
        self.emit_fenced(project_id, run_id, event, None).await;
    }

    /// Queues an event of a run's execution: stored only while `fence` holds the run.
    pub async fn emit_fenced(
        &self,
        project_id: Uuid,
        run_id: Uuid,
        event: RunEvent,
        fence: Option<Fence>,
    ) {
        if self
            .tx
            .send(Emitted {
                project_id,
                run_id,
                event,
                fence,
                stored: None,
            })
            .await
            .is_err()
        {
            tracing::error!(project = %project_id, "the event writer is gone: an event was lost");
        }
    }

    /// Queues an event and waits until it is stored and broadcast; returns its number (None:
    /// not stored, e.g. the fence no longer holds).
    pub async fn emit_stored(
        &self,
        project_id: Uuid,
        run_id: Uuid,
        event: RunEvent,
        fence: Option<Fence>,
    ) -> Option<i64> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Emitted {
                project_id,
                run_id,
                event,
                fence,
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

async fn writer(
    db: Db,
    node: Uuid,
    mut rx: mpsc::Receiver<Emitted>,
    live: broadcast::Sender<StoredEvent>,
) {
    while let Some(e) = rx.recv().await {
        let at = codeflux_db::now();
        let seq = match codeflux_db::append_event(
            &db,
            e.project_id,
            e.run_id,
            at,
            &e.event,
            e.fence,
        )
        .await
        {
            Ok(seq) => seq,
            Err(DbError::Fenced) => {
                tracing::debug!(run = %e.run_id, kind = e.event.kind(), "an event of an execution that lost its run: not stored");
                continue;
            }
            Err(err) => {
                tracing::error!(error = %err, project = %e.project_id, kind = e.event.kind(), "storing a run event: it is lost");
                continue;
            }
        };
        crate::metrics::event_written();
        // Other processes on the database (PostgreSQL) relay it to their own readers.
        let note = format!("{node} {} {seq}", e.project_id);
        if let Err(err) = codeflux_db::notify::notify(&db, EVENTS_CHANNEL, &note).await {
            tracing::warn!(error = %err, "announcing an event to other processes");
        }
        // No live subscriber is normal (nobody watches): the event is stored anyway.
        let _ = live.send(StoredEvent {
            seq,
            project_id: e.project_id,
            run_id: e.run_id,
            at,
            event: e.event,
        });
        if let Some(done) = e.stored {
            // The caller may have stopped waiting; the event is stored either way.
            let _ = done.send(seq);
        }
    }
}

/// Other processes' events, announced on PostgreSQL, read back from the table and broadcast to
/// this process's readers (who skip numbers they have seen and fill gaps from the table). On
/// SQLite there is one process: nothing to relay.
async fn relay(db: Db, node: Uuid, live: broadcast::Sender<StoredEvent>) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let mut listener = match codeflux_db::notify::listen(&db, EVENTS_CHANNEL).await {
            Ok(Some(l)) => l,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "listening for other processes' events; trying again");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        backoff = Duration::from_millis(200);
        loop {
            let note = match listener.recv().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "the event listener stopped; listening again");
                    break;
                }
            };
            let mut parts = note.split(' ');
            let (Some(from), Some(project), Some(seq)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if from == node.to_string() {
                continue;
            }
            let (Ok(project), Ok(seq)) = (project.parse::<Uuid>(), seq.parse::<i64>()) else {
                continue;
            };
            match codeflux_db::events_after(&db, project, seq - 1, 1).await {
                Ok(found) => {
                    for e in found {
                        // Nobody watching is normal.
                        let _ = live.send(e);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "reading another process's event"),
            }
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
