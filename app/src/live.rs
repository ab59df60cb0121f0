//! The live view of a project's runs, fed by its server-sent events.
//!
//! The page starts from the server-rendered conversation and the position of the first event
//! of the runs still working; in the browser an `EventSource` replays those events and follows
//! the live ones (it reconnects by itself with Last-Event-ID). Each run becomes a [`LiveRun`]
//! until it ends, when the conversation is reloaded from the server.

use codeflux_protocol::{RunEvent, StoredEvent, TokenUsage, WorkLog};
use leptos::prelude::*;
use uuid::Uuid;

/// A run that has not ended yet.
#[derive(Clone, Debug, PartialEq)]
pub struct LiveRun {
    pub run_id: Uuid,
    /// The USER message it answers.
    pub message_id: Uuid,
    pub started: bool,
    /// Its steps so far (the same fold as the stored work log).
    pub log: WorkLog,
    /// The latest notice, until the run moves on.
    pub notice: Option<String>,
    /// Tokens used so far.
    pub usage: Option<TokenUsage>,
}

impl LiveRun {
    pub fn new(run_id: Uuid, message_id: Uuid, started: bool) -> Self {
        Self {
            run_id,
            message_id,
            started,
            log: WorkLog::new(run_id),
            notice: None,
            usage: None,
        }
    }
}

/// What the page knows of the project's runs, updated by events.
#[derive(Clone, Copy)]
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
pub struct Live {
    pub runs: RwSignal<Vec<LiveRun>>,
    /// Bumped whenever a run ended: the conversation must be reloaded.
    pub ended: RwSignal<u32>,
    /// Whether the event stream is connected.
    pub connected: RwSignal<bool>,
}

#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
impl Live {
    pub fn new() -> Self {
        Self {
            runs: RwSignal::new(Vec::new()),
            ended: RwSignal::new(0),
            connected: RwSignal::new(false),
        }
    }

    /// Applies one event.
    pub fn apply(&self, e: StoredEvent) {
        let run_id = e.run_id;
        let mut ended = false;
        self.runs.update(|runs| {
            let pos = runs.iter().position(|r| r.run_id == run_id);
            match (&e.event, pos) {
                (RunEvent::RunQueued { message_id, .. }, None) => {
                    runs.push(LiveRun::new(run_id, *message_id, false));
                }
                (RunEvent::RunStarted { .. }, Some(i)) => runs[i].started = true,
                (RunEvent::RunStarted { message_id }, None) => {
                    runs.push(LiveRun::new(run_id, *message_id, true));
                }
                (ev, Some(i)) if ev.is_terminal() => {
                    runs.remove(i);
                    ended = true;
                }
                (ev, None) if ev.is_terminal() => ended = true,
                (RunEvent::Notice { message }, Some(i)) => {
                    runs[i].notice = Some(message.clone());
                    runs[i].log.apply(&e.event);
                }
                (
                    RunEvent::Usage {
                        prompt_tokens,
                        completion_tokens,
                        cost_usd,
                        ..
                    },
                    Some(i),
                ) => runs[i].usage.get_or_insert_with(TokenUsage::default).add(
                    *prompt_tokens,
                    *completion_tokens,
                    *cost_usd,
                ),
                (ev, Some(i)) => {
                    if matches!(
                        ev,
                        RunEvent::TextDelta { .. }
                            | RunEvent::ToolCall { .. }
                            | RunEvent::Checked { .. }
                    ) {
                        runs[i].notice = None;
                    }
                    runs[i].log.apply(ev);
                }
                _ => {}
            }
        });
        if ended {
            self.ended.update(|n| *n += 1);
        }
    }

    /// Whether a run is working or waiting.
    pub fn busy(&self) -> bool {
        self.runs.with(|r| !r.is_empty())
    }
}

/// Text as shown: the summary block's tags removed.
pub fn display_text(text: &str) -> String {
    text.replace("<task_summary>", "")
        .replace("</task_summary>", "")
        .trim()
        .to_owned()
}

/// Opens the project's event stream from `after` (browser only); closes it on cleanup.
#[cfg(feature = "hydrate")]
pub fn connect(live: Live, project_id: Uuid, after: i64) {
    use wasm_bindgen::JsCast;
    use wasm_bindgen::prelude::Closure;

    let url = format!("/api/projects/{project_id}/events?last_event_id={after}");
    let Ok(source) = web_sys::EventSource::new(&url) else {
        return;
    };
    let on_message =
        Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |ev: web_sys::MessageEvent| {
            if let Some(data) = ev.data().as_string()
                && let Ok(event) = serde_json::from_str::<StoredEvent>(&data)
            {
                live.apply(event);
            }
        });
    for kind in [
        "run_queued",
        "run_started",
        "text_delta",
        "text_reset",
        "tool_call",
        "tool_progress",
        "tool_output",
        "file_written",
        "notice",
        "checked",
        "reasoning_delta",
        "usage",
        "run_finished",
        "run_failed",
        "run_cancelled",
        "run_interrupted",
    ] {
        let _ = source.add_event_listener_with_callback(kind, on_message.as_ref().unchecked_ref());
    }
    let on_open = Closure::<dyn FnMut()>::new(move || live.connected.set(true));
    source.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    let on_error = Closure::<dyn FnMut()>::new(move || live.connected.set(false));
    source.set_onerror(Some(on_error.as_ref().unchecked_ref()));
    on_message.forget();
    on_open.forget();
    on_error.forget();
    let source = send_wrapper::SendWrapper::new(source);
    on_cleanup(move || source.close());
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use codeflux_protocol::WorkStep;

    fn ev(seq: i64, run: Uuid, event: RunEvent) -> StoredEvent {
        StoredEvent {
            seq,
            project_id: Uuid::nil(),
            run_id: run,
            at: Utc::now(),
            event,
        }
    }

    #[test]
    fn events_build_the_live_view() {
        let owner = Owner::new();
        owner.with(|| {
            let live = Live::new();
            let run = Uuid::from_u128(1);
            let msg = Uuid::from_u128(2);
            live.apply(ev(
                1,
                run,
                RunEvent::RunQueued {
                    message_id: msg,
                    position: 0,
                },
            ));
            live.apply(ev(2, run, RunEvent::RunStarted { message_id: msg }));
            live.apply(ev(3, run, RunEvent::TextDelta { text: "Hel".into() }));
            live.apply(ev(4, run, RunEvent::TextDelta { text: "lo".into() }));
            live.apply(ev(
                5,
                run,
                RunEvent::ToolCall {
                    call_id: "c".into(),
                    name: "terminal".into(),
                    summary: "ls".into(),
                },
            ));
            live.apply(ev(
                6,
                run,
                RunEvent::ToolOutput {
                    call_id: "c".into(),
                    ok: true,
                    exit_code: Some(0),
                    tail: "a.txt".into(),
                },
            ));
            live.apply(ev(
                7,
                run,
                RunEvent::FileWritten {
                    path: "a.txt".into(),
                },
            ));
            let r = live.runs.get_untracked()[0].clone();
            assert!(r.started);
            assert_eq!(r.log.steps[0], WorkStep::Text { text: "Hello".into() });
            assert!(
                matches!(&r.log.steps[1], WorkStep::Tool { ok: Some(true), tail, .. } if tail == "a.txt")
            );
            assert_eq!(r.log.files(), vec!["a.txt".to_owned()]);
            live.apply(ev(
                8,
                run,
                RunEvent::TextDelta {
                    text: "partial".into(),
                },
            ));
            live.apply(ev(
                9,
                run,
                RunEvent::TextReset {
                    reason: "cut".into(),
                },
            ));
            assert_eq!(live.runs.get_untracked()[0].log.steps.len(), 2);
            live.apply(ev(10, run, RunEvent::RunCancelled { message_id: msg }));
            assert!(!live.busy());
            assert_eq!(live.ended.get_untracked(), 1);
        });
    }

    #[test]
    fn summary_tags_are_hidden() {
        assert_eq!(
            display_text("Done.\n<task_summary>Built it.</task_summary>"),
            "Done.\nBuilt it."
        );
    }
}
