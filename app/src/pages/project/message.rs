//! One message of the conversation: the person's request, or the assistant's answer (its
//! Markdown rendered by the server, its version, its checks, its steps, its tokens), or a
//! failure. Failed checks and failures offer "Fix it".

use codeflux_protocol::{Fragment, Message, MessageKind, Role};
use leptos::prelude::*;
use uuid::Uuid;

use super::state::{Pane, expect_ws};
use super::usage::UsageLine;
use super::worklog::{CheckItems, WorkLogView};
use crate::api::ShowVersion;
use crate::components::{Icon, Svg};
use crate::live::display_text;
use crate::time::RelativeTime;

/// The follow-up "Fix it" sends for a message, if it has something to fix.
pub(super) fn fix_request(m: &Message) -> Option<String> {
    match (m.role, m.kind) {
        (Role::Assistant, MessageKind::Error) => Some(format!(
            "The last request ended with this error:\n{}\n\nFix what caused it if it is in the app, then finish the request.",
            m.content
        )),
        (Role::Assistant, MessageKind::Result) if m.warned() => m.checks.as_ref().map(|c| {
            format!(
                "The automatic check ({}) found these errors in the app. Fix them:\n{}",
                c.names(),
                c.problem_lines(20)
            )
        }),
        _ => None,
    }
}

/// The "Fix it" button: sends `request` as a follow-up.
#[component]
pub(super) fn FixIt(
    request: String,
    #[prop(optional)] label: Option<&'static str>,
) -> impl IntoView {
    let ws = expect_ws();
    let busy = move || ws.send.pending().get();
    view! {
        <button
            type="button"
            title=request.clone()
            disabled=busy
            on:click=move |_| ws.send_message(request.clone())
            class="inline-flex h-11 items-center gap-1.5 rounded-lg bg-amber-600 px-3 text-xs font-medium text-white sm:h-8 sm:px-2.5 hover:bg-amber-500 focus-visible:outline-none focus-visible:ring-2 focus-visible:ring-amber-500 focus-visible:ring-offset-2 disabled:opacity-50 dark:focus-visible:ring-offset-zinc-950"
        >
            <Svg icon=Icon::Wrench class="h-3.5 w-3.5" />
            {label.unwrap_or("Fix it")}
        </button>
    }
}

#[component]
pub(super) fn MessageView(
    message: Message,
    fetched: chrono::DateTime<chrono::Utc>,
    on_retry: Callback<Uuid>,
) -> impl IntoView {
    let ws = expect_ws();
    let fix = fix_request(&message);
    let log = move |run: Option<Uuid>| {
        move || {
            run.and_then(|r| ws.log(r))
                .map(|log| view! { <WorkLogView log /> })
        }
    };
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
                <div data-role="assistant" data-kind="error">
                    <div role="alert" class="rounded-xl border border-red-200 bg-red-50 px-3.5 py-3 text-sm dark:border-red-900/60 dark:bg-red-950/40">
                        <p class="flex items-center gap-1.5 font-medium text-red-800 dark:text-red-200">
                            <Svg icon=Icon::Alert /> "This request did not finish"
                        </p>
                        <p class="mt-1 whitespace-pre-wrap wrap-anywhere text-red-900/90 dark:text-red-100/90">{message.content}</p>
                        <div class="mt-2 flex flex-wrap gap-2">
                            <button
                                type="button"
                                on:click=move |_| on_retry.run(id)
                                class="inline-flex h-11 items-center rounded-lg border border-red-300 px-3 sm:h-8 sm:px-2.5 text-xs font-medium text-red-800 hover:bg-red-100 focus-visible:outline-none focus-visible:ring-2 focus-visible:ring-red-500 dark:border-red-800 dark:text-red-200 dark:hover:bg-red-900/40"
                            >
                                "Retry"
                            </button>
                            {fix.map(|request| view! { <FixIt request /> })}
                        </div>
                    </div>
                    {log(message.run_id)}
                    <UsageLine usage=message.usage model=message.model />
                </div>
            }
            .into_any()
        }
        (Role::Assistant, MessageKind::Result) => {
            let warned = message.warned();
            let body = match message.html {
                Some(html) => view! { <div class="cf-md wrap-anywhere" inner_html=html></div> }.into_any(),
                None => view! { <p class="whitespace-pre-wrap wrap-anywhere">{display_text(&message.content)}</p> }.into_any(),
            };
            let checks = message.checks.clone();
            let badge = checks.clone().filter(|c| c.passed()).map(|c| view! {
                <p class="mt-2 flex items-center gap-1.5 text-xs text-emerald-700 dark:text-emerald-400" data-check="passed">
                    <Svg icon=Icon::Check class="h-3.5 w-3.5" />
                    {if c.rounds == 0 {
                        format!("Checked: {} passed", c.names())
                    } else {
                        format!("Checked: {} passed after {} fix round{}", c.names(), c.rounds, if c.rounds == 1 { "" } else { "s" })
                    }}
                </p>
            });
            let fragment = message
                .fragment
                .map(|f| view! { <FragmentCard fragment=f fetched warned /> });
            let class = if warned {
                "rounded-xl border border-amber-300 bg-amber-50/70 px-3.5 py-3 text-sm leading-relaxed dark:border-amber-800/70 dark:bg-amber-950/30"
            } else {
                "text-sm leading-relaxed"
            };
            view! {
                <div data-role="assistant" data-kind="result" data-warned=warned.to_string()>
                    <div class=class role=warned.then_some("status")>
                        {warned.then(|| view! {
                            <p class="mb-1.5 flex items-center gap-1.5 font-medium text-amber-900 dark:text-amber-200">
                                <Svg icon=Icon::Alert /> "The app still has errors"
                            </p>
                        })}
                        {body}
                        {warned.then(|| checks.map(|c| view! {
                            <div class="mt-2 text-xs text-amber-900 dark:text-amber-100"><CheckItems report=c /></div>
                        }))}
                        {fix.map(|request| view! { <div class="mt-2"><FixIt request /></div> })}
                    </div>
                    {badge}
                    {fragment}
                    {log(message.run_id)}
                    <UsageLine usage=message.usage model=message.model />
                </div>
            }
            .into_any()
        }
    }
}

#[component]
fn FragmentCard(
    fragment: Fragment,
    fetched: chrono::DateTime<chrono::Utc>,
    warned: bool,
) -> impl IntoView {
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
            <span class=if warned { "flex h-8 w-8 shrink-0 items-center justify-center rounded-lg bg-amber-50 text-amber-600 dark:bg-amber-950 dark:text-amber-300" } else { "flex h-8 w-8 shrink-0 items-center justify-center rounded-lg bg-indigo-50 text-indigo-600 dark:bg-indigo-950 dark:text-indigo-300" }>
                <Svg icon=if warned { Icon::Alert } else { Icon::Sparkles } />
            </span>
            <span class="min-w-0">
                <span class="block truncate text-sm font-medium">{fragment.title}</span>
                <span class="block text-xs text-zinc-500 dark:text-zinc-400">
                    {format!("{count} file{}", if count == 1 { "" } else { "s" })}
                    {warned.then_some(" · has errors")}
                    " · "
                    <RelativeTime at=fragment.created_at fetched />
                </span>
            </span>
        </button>
    }
}
