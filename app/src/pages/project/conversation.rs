//! The conversation: messages, versions (fragment cards), the live run with its steps.

use codeflux_protocol::{Role, WorkStep};
use leptos::prelude::*;
use uuid::Uuid;

use super::message::MessageView;
use super::state::expect_ws;
use super::worklog::WorkSteps;
use crate::live::LiveRun;

#[component]
pub(super) fn Conversation(fetched: chrono::DateTime<chrono::Utc>) -> impl IntoView {
    let ws = expect_ws();
    let on_retry = Callback::new(move |error_id: Uuid| {
        let prompt = ws.messages.with(|list| {
            let pos = list.iter().position(|m| m.id == error_id)?;
            list[..pos]
                .iter()
                .rev()
                .find(|m| m.role == Role::User)
                .map(|m| m.content.clone())
        });
        if let Some(content) = prompt {
            ws.send_message(content);
        }
    });
    // Follow the newest content while the reader is at the bottom (not while they scroll back).
    let scroller = NodeRef::<leptos::html::Div>::new();
    let stick = RwSignal::new(true);
    Effect::new(move |_| {
        ws.messages.track();
        ws.live.runs.track();
        if stick.get_untracked()
            && let Some(el) = scroller.get()
        {
            request_animation_frame(move || el.set_scroll_top(el.scroll_height()));
        }
    });
    let on_scroll = move |_| {
        if let Some(el) = scroller.get_untracked() {
            stick.set(el.scroll_height() - el.scroll_top() - el.client_height() < 80);
        }
    };
    view! {
        <div node_ref=scroller on:scroll=on_scroll class="min-h-0 flex-1 overflow-y-auto overscroll-contain px-3 py-4 sm:px-4" aria-live="polite">
            <div class="space-y-4">
                <For
                    each=move || ws.messages.get()
                    key=|m| (m.id, m.fragment.as_ref().map(|f| f.id), m.run_id)
                    children=move |m| view! { <MessageView message=m fetched on_retry /> }
                />
                <For
                    each=move || ws.live.runs.get()
                    key=|r| r.run_id
                    children=move |r| {
                        let run_id = r.run_id;
                        let run = Signal::derive(move || ws.live.runs.with(|rs| rs.iter().find(|x| x.run_id == run_id).cloned()));
                        view! { <LiveRunView run /> }
                    }
                />
            </div>
        </div>
    }
}

#[component]
fn LiveRunView(run: Signal<Option<LiveRun>>) -> impl IntoView {
    move || {
        let Some(r) = run.get() else {
            return ().into_any();
        };
        if !r.started {
            return ().into_any();
        }
        let tokens = r
            .usage
            .map(|u| format!(" · {} tokens so far", super::usage::tokens(u.total())));
        // The latest notice stands out, unless it is already the last step shown.
        let notice = r.notice.filter(
            |n| !matches!(r.log.steps.last(), Some(WorkStep::Notice { message }) if message == n),
        );
        view! {
            <div class="space-y-2 text-sm" data-live-run="true">
                <WorkSteps log=r.log live=true />
                {notice.map(|n| view! { <p class="text-xs text-amber-700 dark:text-amber-400">{n}</p> })}
                <p class="flex items-center gap-2 text-xs text-zinc-500">
                    <span class="h-2 w-2 animate-pulse rounded-full bg-indigo-500"></span>
                    "Working…" {tokens}
                </p>
            </div>
        }
        .into_any()
    }
}
