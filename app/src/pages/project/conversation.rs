//! The conversation: messages, versions (fragment cards), the live run with its steps.

use codeflux_protocol::{Fragment, Message, MessageKind, Role};
use leptos::prelude::*;
use uuid::Uuid;

use super::state::{Pane, expect_ws};
use crate::api::{CreateMessage, ShowVersion};
use crate::components::{Icon, Svg};
use crate::live::{LiveRun, Step, display_text};
use crate::time::RelativeTime;

#[component]
pub(super) fn Conversation(fetched: chrono::DateTime<chrono::Utc>) -> impl IntoView {
    let ws = expect_ws();
    let retry = ServerAction::<CreateMessage>::new();
    Effect::new(move |_| {
        if let Some(Ok(m)) = retry.value().get() {
            ws.messages.update(|list| {
                if !list.iter().any(|x| x.id == m.id) {
                    list.push(m);
                }
            });
        }
    });
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
            retry.dispatch(CreateMessage {
                project_id: ws.project_id.to_string(),
                content,
            });
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
                    key=|m| (m.id, m.fragment.as_ref().map(|f| f.id))
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
fn MessageView(
    message: Message,
    fetched: chrono::DateTime<chrono::Utc>,
    on_retry: Callback<Uuid>,
) -> impl IntoView {
    let ws = expect_ws();
    match (message.role, message.kind) {
        (Role::User, _) => {
            let id = message.id;
            let queued = move || {
                ws.live
                    .runs
                    .with(|r| r.iter().any(|r| r.message_id == id && !r.started))
            };
            view! {
                <div class="flex flex-col items-end gap-1">
                    <p data-role="user" class="max-w-[88%] rounded-2xl rounded-br-md bg-zinc-200/80 px-3.5 py-2 text-sm whitespace-pre-wrap wrap-anywhere dark:bg-zinc-800">
                        {message.content}
                    </p>
                    {move || queued().then(|| view! { <span class="text-[11px] text-zinc-500">"Queued, starts after the current run"</span> })}
                </div>
            }
            .into_any()
        }
        (Role::Assistant, MessageKind::Error) => {
            let id = message.id;
            view! {
                <div role="alert" class="rounded-xl border border-red-200 bg-red-50 px-3.5 py-3 text-sm dark:border-red-900/60 dark:bg-red-950/40">
                    <p class="flex items-center gap-1.5 font-medium text-red-800 dark:text-red-200">
                        <Svg icon=Icon::Alert /> "This request did not finish"
                    </p>
                    <p class="mt-1 whitespace-pre-wrap wrap-anywhere text-red-900/90 dark:text-red-100/90">{message.content}</p>
                    <button
                        type="button"
                        on:click=move |_| on_retry.run(id)
                        class="mt-2 inline-flex h-11 items-center rounded-lg border border-red-300 px-3 sm:h-8 sm:px-2.5 text-xs font-medium text-red-800 hover:bg-red-100 focus-visible:outline-none focus-visible:ring-2 focus-visible:ring-red-500 dark:border-red-800 dark:text-red-200 dark:hover:bg-red-900/40"
                    >
                        "Retry"
                    </button>
                </div>
            }
            .into_any()
        }
        (Role::Assistant, MessageKind::Result) => {
            let fragment = message
                .fragment
                .map(|f| view! { <FragmentCard fragment=f fetched /> });
            view! {
                <div class="text-sm leading-relaxed">
                    <p class="whitespace-pre-wrap wrap-anywhere">{display_text(&message.content)}</p>
                    {fragment}
                </div>
            }
            .into_any()
        }
    }
}

#[component]
fn FragmentCard(fragment: Fragment, fetched: chrono::DateTime<chrono::Utc>) -> impl IntoView {
    let ws = expect_ws();
    let id = fragment.id;
    let count = fragment.files.len();
    let selected = move || ws.current().is_some_and(|f| f.id == id);
    view! {
        <button
            type="button"
            aria-pressed=move || selected().to_string()
            on:click=move |_| {
                let latest = ws.latest().map(|f| f.id);
                let was = ws.current().map(|f| f.id);
                ws.selected.set(if latest == Some(id) { None } else { Some(id) });
                if was != Some(id) {
                    ws.show.dispatch(ShowVersion {
                        project_id: ws.project_id.to_string(),
                        fragment_id: id.to_string(),
                    });
                }
                if ws.pane.get_untracked() == Pane::Chat {
                    ws.pane.set(Pane::Preview);
                    ws.unseen_version.set(false);
                }
            }
            class="mt-2 flex w-full items-center gap-3 rounded-xl border border-zinc-200 bg-white px-3 py-2.5 text-left hover:border-zinc-300 focus-visible:outline-none focus-visible:ring-2 focus-visible:ring-indigo-500 aria-pressed:border-indigo-400 aria-pressed:ring-1 aria-pressed:ring-indigo-400 dark:border-zinc-800 dark:bg-zinc-900 dark:hover:border-zinc-700 dark:aria-pressed:border-indigo-500"
        >
            <span class="flex h-8 w-8 shrink-0 items-center justify-center rounded-lg bg-indigo-50 text-indigo-600 dark:bg-indigo-950 dark:text-indigo-300">
                <Svg icon=Icon::Sparkles />
            </span>
            <span class="min-w-0">
                <span class="block truncate text-sm font-medium">{fragment.title}</span>
                <span class="block text-xs text-zinc-500 dark:text-zinc-400">
                    {format!("{count} file{}", if count == 1 { "" } else { "s" })} " · "
                    <RelativeTime at=fragment.created_at fetched />
                </span>
            </span>
        </button>
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
        let steps = r.steps.clone();
        let files = r.files.clone();
        view! {
            <div class="space-y-2 text-sm" data-live-run="true">
                {steps
                    .into_iter()
                    .map(|s| match s {
                        Step::Text(t) => {
                            let t = display_text(&t);
                            (!t.is_empty()).then(|| view! { <p class="whitespace-pre-wrap wrap-anywhere leading-relaxed">{t}</p> }).into_any()
                        }
                        Step::Tool { name, summary, ok, exit_code, tail, .. } => view! { <ToolRow name summary ok exit_code tail /> }.into_any(),
                    })
                    .collect_view()}
                {(!files.is_empty()).then(|| view! {
                    <div class="flex flex-wrap gap-1" aria-label="Files written">
                        {files.into_iter().map(|f| view! {
                            <span class="max-w-full truncate rounded-md bg-zinc-100 px-1.5 py-0.5 font-mono text-[11px] text-zinc-600 dark:bg-zinc-800 dark:text-zinc-300">{f}</span>
                        }).collect_view()}
                    </div>
                })}
                {r.notice.map(|n| view! { <p class="text-xs text-amber-700 dark:text-amber-400">{n}</p> })}
                <p class="flex items-center gap-2 text-xs text-zinc-500">
                    <span class="h-2 w-2 animate-pulse rounded-full bg-indigo-500"></span>
                    "Working…"
                </p>
            </div>
        }
        .into_any()
    }
}

#[component]
fn ToolRow(
    name: String,
    summary: String,
    ok: Option<bool>,
    exit_code: Option<i32>,
    tail: String,
) -> impl IntoView {
    let icon = match name.as_str() {
        "terminal" => Icon::Terminal,
        "readFiles" => Icon::Eye,
        _ => Icon::File,
    };
    let verb = match name.as_str() {
        "terminal" => "Ran",
        _ => "",
    };
    let state = match ok {
        None => "…",
        Some(true) => "",
        Some(false) => "failed",
    };
    let text = if verb.is_empty() {
        summary
    } else {
        format!("{verb} {summary}")
    };
    let has_tail = !tail.trim().is_empty();
    let status = exit_code.map(|c| format!("exit {c}"));
    view! {
        <details class="group rounded-lg border border-zinc-200 bg-white dark:border-zinc-800 dark:bg-zinc-900">
            <summary class="flex cursor-pointer list-none items-center gap-2 px-2.5 py-1.5 text-xs focus-visible:outline-none focus-visible:ring-2 focus-visible:ring-indigo-500">
                <Svg icon=icon class="h-3.5 w-3.5 shrink-0 text-zinc-400" />
                <span class="min-w-0 flex-1 truncate font-mono">{text}</span>
                <span class=if ok == Some(false) { "shrink-0 text-red-600 dark:text-red-400" } else { "shrink-0 text-zinc-400" }>{state} " " {status}</span>
            </summary>
            {has_tail.then(|| view! {
                <pre class="max-h-48 overflow-auto border-t border-zinc-100 px-2.5 py-2 font-mono text-[11px] leading-snug whitespace-pre-wrap wrap-anywhere text-zinc-600 dark:border-zinc-800 dark:text-zinc-300">{tail}</pre>
            })}
        </details>
    }
}
