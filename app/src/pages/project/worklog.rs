//! A run's steps in the conversation: the model's notes, its thinking (collapsed), each tool
//! call with its arguments in short, files as chips that open the Code tab, commands with their
//! exit code and output, and the checks of the app. Live while a run works; collapsed to one
//! line ("9 steps · 6 files · 2 commands · checked") under the message once it has finished.

use codeflux_protocol::{CheckReport, CheckStatus, WorkLog, WorkStep};
use leptos::prelude::*;

use super::state::expect_ws;
use crate::components::{Icon, Svg};
use crate::live::display_text;

/// The finished run's steps, collapsed under its message.
#[component]
pub(super) fn WorkLogView(log: WorkLog) -> impl IntoView {
    if log.steps.is_empty() {
        return ().into_any();
    }
    let line = log.summary_line();
    let failed = log.checked() == Some(false);
    view! {
        <details class="group/log mt-2 rounded-xl border border-zinc-200 bg-zinc-50/60 text-xs dark:border-zinc-800 dark:bg-zinc-900/40" data-worklog="true">
            <summary class="flex min-h-11 cursor-pointer list-none items-center gap-2 px-3 py-2 text-zinc-600 sm:min-h-9 hover:text-zinc-900 focus-visible:outline-none focus-visible:ring-2 focus-visible:ring-indigo-500 dark:text-zinc-400 dark:hover:text-zinc-100">
                <Svg icon=Icon::Terminal class="h-3.5 w-3.5 shrink-0" />
                <span class="min-w-0 flex-1 truncate">
                    <span class="sr-only">"Steps: "</span>
                    {line}
                </span>
                {failed.then(|| view! { <Svg icon=Icon::Alert class="h-3.5 w-3.5 shrink-0 text-amber-600" /> })}
                <span class="shrink-0 text-zinc-400 transition-transform group-open/log:rotate-90" aria-hidden="true">"›"</span>
            </summary>
            <div class="space-y-2 border-t border-zinc-200 px-3 py-2.5 dark:border-zinc-800">
                <WorkSteps log live=false />
            </div>
        </details>
    }
    .into_any()
}

/// Every step of a log, in order.
#[component]
pub(super) fn WorkSteps(log: WorkLog, live: bool) -> impl IntoView {
    let truncated = log.truncated;
    view! {
        {log
            .steps
            .into_iter()
            .map(|s| match s {
                WorkStep::Text { text } => {
                    let t = display_text(&text);
                    (!t.is_empty())
                        .then(|| view! { <p class="text-sm whitespace-pre-wrap wrap-anywhere leading-relaxed text-zinc-700 dark:text-zinc-300">{t}</p> })
                        .into_any()
                }
                WorkStep::Thinking { text } => view! { <Thinking text live /> }.into_any(),
                WorkStep::Tool { name, summary, ok, exit_code, tail, output, files, .. } => {
                    view! { <ToolRow name summary ok exit_code tail output files live /> }.into_any()
                }
                WorkStep::Check { passed, round, report } => view! { <CheckRow passed round report /> }.into_any(),
                WorkStep::Notice { message } => view! {
                    <p class="text-[11px] text-zinc-500 dark:text-zinc-400">{message}</p>
                }
                .into_any(),
            })
            .collect_view()}
        {truncated.then(|| view! { <p class="text-[11px] text-zinc-400">"Later steps are not shown."</p> })}
    }
}

#[component]
fn Thinking(text: String, live: bool) -> impl IntoView {
    view! {
        <details class="rounded-lg text-xs text-zinc-500 dark:text-zinc-400" open=live>
            <summary class="flex min-h-11 cursor-pointer list-none items-center gap-1.5 sm:min-h-8 focus-visible:outline-none focus-visible:ring-2 focus-visible:ring-indigo-500">
                <Svg icon=Icon::Brain class="h-3.5 w-3.5" />
                "Thinking"
            </summary>
            <p class="mt-1 max-h-48 overflow-auto border-l-2 border-zinc-200 pl-2 whitespace-pre-wrap wrap-anywhere italic dark:border-zinc-700">{text}</p>
        </details>
    }
}

/// A file chip: opens the file in the Code tab.
#[component]
pub(super) fn FileChip(path: String) -> impl IntoView {
    let ws = expect_ws();
    let target = path.clone();
    let title = format!("Open {path} in the Code tab");
    view! {
        <button
            type="button"
            title=title
            on:click=move |_| ws.open_file(target.clone())
            class="inline-flex min-h-11 min-w-11 max-w-full items-center truncate rounded-md bg-zinc-100 px-1.5 py-0.5 font-mono text-[11px] text-zinc-600 hover:bg-indigo-50 hover:text-indigo-700 focus-visible:outline-none focus-visible:ring-2 focus-visible:ring-indigo-500 sm:min-h-0 sm:min-w-0 dark:bg-zinc-800 dark:text-zinc-300 dark:hover:bg-indigo-950 dark:hover:text-indigo-300"
        >
            {path}
        </button>
    }
}

#[allow(clippy::too_many_arguments)] // one row, one field per argument
#[component]
fn ToolRow(
    name: String,
    summary: String,
    ok: Option<bool>,
    exit_code: Option<i32>,
    tail: String,
    output: String,
    files: Vec<String>,
    live: bool,
) -> impl IntoView {
    let icon = match name.as_str() {
        "terminal" => Icon::Terminal,
        "readFiles" => Icon::Eye,
        _ => Icon::File,
    };
    let text = if name == "terminal" {
        format!("$ {summary}")
    } else {
        summary
    };
    let state = match (ok, exit_code) {
        (None, _) => "running…".to_owned(),
        (Some(_), Some(c)) => format!("exit {c}"),
        (Some(true), None) => String::new(),
        (Some(false), None) => "failed".to_owned(),
    };
    // While a command runs its output streams in; once done, the end of its result.
    let body = if ok.is_none() || tail.trim().is_empty() {
        output
    } else {
        tail
    };
    let has_body = !body.trim().is_empty();
    let running = ok.is_none();
    view! {
        <div class="rounded-lg border border-zinc-200 bg-white dark:border-zinc-800 dark:bg-zinc-900" data-step=name.clone()>
            <details open=live && running && has_body>
                <summary class="flex min-h-11 cursor-pointer list-none items-center gap-2 px-2.5 py-1.5 text-xs sm:min-h-9 focus-visible:outline-none focus-visible:ring-2 focus-visible:ring-indigo-500">
                    <Svg icon=icon class="h-3.5 w-3.5 shrink-0 text-zinc-400" />
                    <span class="min-w-0 flex-1 truncate font-mono">{text}</span>
                    <span class=if ok == Some(false) { "shrink-0 text-red-600 dark:text-red-400" } else { "shrink-0 text-zinc-400" }>{state}</span>
                </summary>
                {has_body.then(|| view! {
                    <pre class="max-h-48 overflow-auto border-t border-zinc-100 px-2.5 py-2 font-mono text-[11px] leading-snug whitespace-pre-wrap wrap-anywhere text-zinc-600 dark:border-zinc-800 dark:text-zinc-300">{body}</pre>
                })}
            </details>
            {(!files.is_empty()).then(|| view! {
                <div class="flex flex-wrap gap-1 border-t border-zinc-100 px-2.5 py-1.5 dark:border-zinc-800" aria-label="Files written">
                    {files.into_iter().map(|f| view! { <FileChip path=f /> }).collect_view()}
                </div>
            })}
        </div>
    }
}

#[component]
fn CheckRow(passed: bool, round: u32, report: CheckReport) -> impl IntoView {
    let title = match (passed, round) {
        (true, 0) => format!("Checked: {} passed", report.names()),
        (true, n) => format!("Checked after fix round {n}: {} passed", report.names()),
        (false, 0) => format!("Check found problems ({})", report.names()),
        (false, n) => format!("Check after fix round {n} still found problems"),
    };
    let class = if passed {
        "rounded-lg border border-emerald-200 bg-emerald-50 px-2.5 py-1.5 text-xs text-emerald-800 dark:border-emerald-900/60 dark:bg-emerald-950/40 dark:text-emerald-200"
    } else {
        "rounded-lg border border-amber-200 bg-amber-50 px-2.5 py-1.5 text-xs text-amber-900 dark:border-amber-900/60 dark:bg-amber-950/40 dark:text-amber-100"
    };
    view! {
        <div class=class data-check=if passed { "passed" } else { "failed" }>
            <p class="flex items-center gap-1.5 font-medium">
                <Svg icon=if passed { Icon::Check } else { Icon::Alert } class="h-3.5 w-3.5 shrink-0" />
                {title}
            </p>
            <CheckItems report />
        </div>
    }
}

/// Each check with its result and, for the failed ones, the problems.
#[component]
pub(super) fn CheckItems(report: CheckReport) -> impl IntoView {
    view! {
        <ul class="mt-1 space-y-0.5">
            {report.items.into_iter().map(|item| {
                let mark = match item.status {
                    CheckStatus::Passed => "✓",
                    CheckStatus::Failed => "✗",
                    CheckStatus::Skipped => "–",
                };
                let note = item.note.clone().map(|n| format!(" ({n})")).unwrap_or_default();
                let secs = format!(" · {:.1} s", item.ms as f64 / 1000.0);
                view! {
                    <li>
                        <span class="font-mono">{mark}</span> " " {item.name} <span class="opacity-70">{secs}{note}</span>
                        {(!item.problems.is_empty()).then(|| view! {
                            <ul class="mt-0.5 ml-4 list-disc space-y-0.5 font-mono text-[11px] wrap-anywhere">
                                {item.problems.into_iter().map(|p| view! { <li>{p.line_text()}</li> }).collect_view()}
                            </ul>
                        })}
                    </li>
                }
            }).collect_view()}
        </ul>
    }
}
