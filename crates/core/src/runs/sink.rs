//! Where a run's agent reports: events to the bus, streamed text and reasoning gathered into
//! fewer events, and the tokens of every model call added up.

use std::sync::Mutex;
use std::time::Instant;

use async_trait::async_trait;
use codeflux_agent::EventSink;
use codeflux_db::cluster::Fence;
use codeflux_protocol::{RunEvent, TokenUsage};
use uuid::Uuid;

use crate::events::EventBus;

/// Characters of streamed text gathered into one stored event.
const TEXT_BATCH_CHARS: usize = 160;
/// Longest wait before gathered text is stored.
const TEXT_BATCH_MS: u128 = 120;

#[derive(Default)]
struct Pending {
    text: String,
    reasoning: String,
    since: Option<Instant>,
}

/// Forwards the agent's events to the bus.
pub(super) struct RunSink {
    bus: EventBus,
    project_id: Uuid,
    run_id: Uuid,
    /// The execution's lease: its events are stored only while it holds the run.
    fence: Fence,
    pending: Mutex<Pending>,
    /// Tokens of the run so far, and the model that last answered.
    usage: Mutex<(Option<TokenUsage>, Option<String>)>,
}

impl RunSink {
    /// `usage`: what earlier executions of the run used (a resumed run goes on counting).
    pub(super) fn new(
        bus: EventBus,
        project_id: Uuid,
        fence: Fence,
        usage: (Option<TokenUsage>, Option<String>),
    ) -> Self {
        Self {
            bus,
            project_id,
            run_id: fence.run_id,
            fence,
            pending: Mutex::new(Pending::default()),
            usage: Mutex::new(usage),
        }
    }

    /// Sends an event of this execution (fenced).
    pub(super) async fn send(&self, event: RunEvent) {
        self.bus
            .emit_fenced(self.project_id, self.run_id, event, Some(self.fence))
            .await;
    }

    /// What the run's model calls used (None: no call reported usage).
    pub(super) fn usage(&self) -> Option<TokenUsage> {
        self.usage.lock().ok().and_then(|u| u.0)
    }

    /// The model that last answered.
    pub(super) fn model(&self) -> Option<String> {
        self.usage.lock().ok().and_then(|u| u.1.clone())
    }

    fn take(&self) -> (Option<String>, Option<String>) {
        let Ok(mut p) = self.pending.lock() else {
            return (None, None);
        };
        p.since = None;
        let text = std::mem::take(&mut p.text);
        let reasoning = std::mem::take(&mut p.reasoning);
        (
            (!reasoning.is_empty()).then_some(reasoning),
            (!text.is_empty()).then_some(text),
        )
    }

    pub(super) async fn flush(&self) {
        let (reasoning, text) = self.take();
        if let Some(text) = reasoning {
            self.send(RunEvent::ReasoningDelta { text }).await;
        }
        if let Some(text) = text {
            self.send(RunEvent::TextDelta { text }).await;
        }
    }

    /// Gathers a piece of streamed text, sending what was gathered when it is big or old
    /// enough. Reasoning and answer text keep their order: switching kinds sends first.
    async fn gather(&self, text: String, reasoning: bool) {
        let switch = self.pending.lock().is_ok_and(|p| {
            if reasoning {
                !p.text.is_empty()
            } else {
                !p.reasoning.is_empty()
            }
        });
        if switch {
            self.flush().await;
        }
        let due = match self.pending.lock() {
            Ok(mut p) => {
                if reasoning {
                    p.reasoning.push_str(&text);
                } else {
                    p.text.push_str(&text);
                }
                let since = *p.since.get_or_insert_with(Instant::now);
                p.text.len() + p.reasoning.len() >= TEXT_BATCH_CHARS
                    || since.elapsed().as_millis() >= TEXT_BATCH_MS
            }
            Err(_) => false,
        };
        if due {
            self.flush().await;
        }
    }
}

#[async_trait]
impl EventSink for RunSink {
    async fn emit(&self, event: RunEvent) {
        match event {
            RunEvent::TextDelta { text } => return self.gather(text, false).await,
            RunEvent::ReasoningDelta { text } => return self.gather(text, true).await,
            _ => {}
        }
        match &event {
            RunEvent::TextReset { .. } => {
                // Text of a failed attempt that was not sent yet is simply dropped.
                if let Ok(mut p) = self.pending.lock() {
                    *p = Pending::default();
                }
            }
            RunEvent::Usage {
                prompt_tokens,
                completion_tokens,
                cost_usd,
                model,
            } => {
                if let Ok(mut u) = self.usage.lock() {
                    u.0.get_or_insert_with(TokenUsage::default).add(
                        *prompt_tokens,
                        *completion_tokens,
                        *cost_usd,
                    );
                    u.1 = Some(model.clone());
                }
                self.flush().await;
            }
            _ => self.flush().await,
        }
        self.send(event).await;
    }
}
