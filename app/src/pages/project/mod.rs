//! A project's workspace: the conversation with its live run, and the preview and code panes.
//! Desktop: chat beside the preview/code pane. Phone (< 640 px): one pane at a time under a
//! Chat / Preview / Code tab bar.

mod conversation;
mod follow_up;
mod message;
mod share;
mod state;
mod usage;
mod worklog;

use codeflux_protocol::{ErrorKind, ProjectView, RunStatus};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

use crate::api::{ApiError, CancelRuns, get_project_view};
use crate::components::{Brand, Icon, Svg, ThemeToggle, TopBar};
use crate::live::{Live, LiveRun};
use crate::pages::code::CodePane;
use crate::pages::preview::PreviewPane;
use crate::pages::project::usage::ProjectUsage;
use crate::time::Stamped;
use conversation::Conversation;
use follow_up::FollowUp;
use share::ShareButton;
use state::expect_ws;
pub use state::{Pane, Ws, use_ws};

#[component]
pub fn ProjectPage() -> impl IntoView {
    let params = use_params_map();
    let id = Memo::new(move |_| params.read().get("id").unwrap_or_default());
    let view = Resource::new(
        move || id.get(),
        |id| async move { get_project_view(id).await.map(Stamped::now) },
    );
    view! {
        <Suspense fallback=|| view! { <PageSkeleton /> }>
            {move || Suspend::new(async move {
                match view.await {
                    Ok(v) => view! { <Workspace view=v /> }.into_any(),
                    Err(e) => view! { <ProjectMissing error=e /> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn Workspace(view: Stamped<ProjectView>) -> impl IntoView {
    let fetched = view.at;
    let ProjectView {
        project,
        messages,
        active_runs,
        resume_from,
        preview_url,
    } = view.data;
    let live = Live::new();
    live.runs.set(
        active_runs
            .iter()
            .map(|r| LiveRun::new(r.id, r.message_id, r.status == RunStatus::Running))
            .collect(),
    );
    let ws = Ws {
        project_id: project.id,
        messages: RwSignal::new(messages),
        live,
        selected: RwSignal::new(None),
        pane: RwSignal::new(Pane::Chat),
        preview_nonce: RwSignal::new(0),
        preview_url: StoredValue::new(preview_url),
        unseen_version: RwSignal::new(false),
        show: ServerAction::new(),
        code_file: RwSignal::new(None),
        logs: RwSignal::new(Vec::new()),
        model: RwSignal::new(String::new()),
        preview_errors: RwSignal::new(Vec::new()),
        send: ServerAction::new(),
    };
    provide_context(ws);
    // A message sent (prompt box, Retry, Fix it) joins the conversation at once.
    Effect::new(move |_| {
        if let Some(Ok(m)) = ws.send.value().get() {
            ws.preview_errors.set(Vec::new());
            ws.messages.update(|list| {
                if !list.iter().any(|x| x.id == m.id) {
                    list.push(m);
                }
            });
        }
    });

    #[cfg(feature = "hydrate")]
    {
        let pid = project.id;
        Effect::new(move |_| crate::live::connect(live, pid, resume_from));
        // The preview may still show a version chosen earlier: bring it back to the latest.
        Effect::new(move |_| {
            let (latest, busy) = untrack(|| (ws.latest().map(|f| f.id), live.busy()));
            if let Some(latest) = latest
                && !busy
            {
                ws.show.dispatch(crate::api::ShowVersion {
                    project_id: pid.to_string(),
                    fragment_id: latest.to_string(),
                });
            }
        });
        // The runs' steps: loaded once the page runs, again whenever a run ended.
        Effect::new(move |_| {
            live.ended.track();
            leptos::task::spawn_local(async move {
                match crate::api::work_logs(pid.to_string()).await {
                    Ok(logs) => ws.logs.set(logs),
                    Err(e) => leptos::logging::warn!("loading the runs' steps: {}", e.message()),
                }
            });
        });
        crate::pages::preview::listen_for_preview_errors(ws);
        // A run ended: reload the conversation (its reply, its version, or its error).
        Effect::new(move |prev: Option<u32>| {
            let n = live.ended.get();
            if prev.is_some_and(|p| p != n) {
                leptos::task::spawn_local(async move {
                    if let Ok(list) = crate::api::get_messages(pid.to_string()).await {
                        let had = ws.latest().map(|f| f.id);
                        ws.messages.set(list);
                        ws.selected.set(None);
                        if ws.latest().map(|f| f.id) != had
                            && ws.pane.get_untracked() != Pane::Preview
                        {
                            ws.unseen_version.set(true);
                        }
                    }
                });
            }
            n
        });
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = resume_from;

    let stop = ServerAction::<CancelRuns>::new();
    let busy = move || live.busy();
    let working = move || live.runs.with(|r| r.iter().any(|r| r.started));
    let pane = ws.pane;
    let show = move |p: Pane| {
        pane.set(p);
        if p == Pane::Preview {
            ws.unseen_version.set(false);
        }
    };

    let name = project.name.clone();
    let header = view! {
            <TopBarPlain>
                <a
                    href="/"
                    aria-label="Back to home"
                    class="inline-flex h-11 w-11 shrink-0 items-center justify-center rounded-lg text-zinc-500 sm:h-9 sm:w-9 hover:bg-zinc-200/70 hover:text-zinc-900 focus-visible:outline-none focus-visible:ring-2 focus-visible:ring-indigo-500 dark:text-zinc-400 dark:hover:bg-zinc-800 dark:hover:text-zinc-100"
                >
                    <Svg icon=Icon::ArrowLeft />
                </a>
                <h1 class="min-w-0 truncate text-sm font-semibold">{project.name.clone()}</h1>
                <span class="hidden shrink-0 rounded-md bg-zinc-100 px-1.5 py-0.5 text-[11px] text-zinc-500 sm:inline dark:bg-zinc-800 dark:text-zinc-400">
                    {project.template.label()}
                </span>
                <ProjectUsage />
                <span class="ml-auto flex shrink-0 items-center gap-2" aria-live="polite">
                    {move || working().then(|| view! {
                        <span class="flex items-center gap-1.5 text-xs text-indigo-600 dark:text-indigo-400">
                            <span class="h-2 w-2 animate-pulse rounded-full bg-indigo-500"></span>
                            "Working"
                        </span>
                    })}
                    {move || (busy() && !working()).then(|| view! {
                        <span class="text-xs text-zinc-500">"Queued"</span>
                    })}
                    {move || busy().then(|| view! {
                        <button
                            type="button"
                            on:click=move |_| { stop.dispatch(CancelRuns { project_id: ws.project_id.to_string() }); }
                            disabled=move || stop.pending().get()
                            class="inline-flex h-11 items-center gap-1.5 rounded-lg border border-zinc-300 px-3 text-xs font-medium sm:h-8 sm:px-2.5 hover:bg-zinc-100 focus-visible:outline-none focus-visible:ring-2 focus-visible:ring-indigo-500 disabled:opacity-50 dark:border-zinc-700 dark:hover:bg-zinc-800"
                        >
                            <span class="h-2.5 w-2.5 rounded-sm bg-current"></span>
                            "Stop"
                        </button>
                    })}
                </span>
                <ShareButton />
                <ThemeToggle />
            </TopBarPlain>
    }
    .into_any();
    let panes = view! {
            <div class="flex min-h-0 flex-1">
                <section
                    aria-label="Chat"
                    class=move || if pane.get() == Pane::Chat { "flex min-h-0 w-full min-w-0 flex-col border-zinc-200 sm:w-[380px] sm:shrink-0 sm:border-r lg:w-[440px] dark:border-zinc-800" } else { "hidden min-h-0 w-full min-w-0 flex-col border-zinc-200 sm:flex sm:w-[380px] sm:shrink-0 sm:border-r lg:w-[440px] dark:border-zinc-800" }
                >
                    <Conversation fetched />
                    <FollowUp />
                </section>
                <section
                    aria-label="Preview and code"
                    class=move || if pane.get() == Pane::Chat { "hidden min-h-0 min-w-0 flex-1 flex-col sm:flex" } else { "flex min-h-0 min-w-0 flex-1 flex-col" }
                >
                    <div role="tablist" aria-label="Preview or code" class="hidden h-11 shrink-0 items-center gap-1 border-b border-zinc-200 px-2 sm:flex dark:border-zinc-800">
                        <PaneTab label="Preview" icon=Icon::Eye active=Signal::derive(move || pane.get() != Pane::Code) on_select=move || show(Pane::Preview) />
                        <PaneTab label="Code" icon=Icon::Code active=Signal::derive(move || pane.get() == Pane::Code) on_select=move || show(Pane::Code) />
                    </div>
                    <div class=move || if pane.get() == Pane::Code { "hidden" } else { "flex min-h-0 flex-1 flex-col" }>
                        <PreviewPane />
                    </div>
                    <div class=move || if pane.get() == Pane::Code { "flex min-h-0 flex-1 flex-col" } else { "hidden" }>
                        <CodePane />
                    </div>
                </section>
            </div>

    }
    .into_any();
    let tabs = view! {
            <nav
                aria-label="Panes"
                class="grid shrink-0 grid-cols-3 border-t border-zinc-200 bg-zinc-50 pb-[env(safe-area-inset-bottom)] sm:hidden dark:border-zinc-800 dark:bg-zinc-950"
            >
                <BottomTab label="Chat" icon=Icon::Chat pane=Pane::Chat on_select=move || show(Pane::Chat) />
                <BottomTab label="Preview" icon=Icon::Eye pane=Pane::Preview on_select=move || show(Pane::Preview) />
                <BottomTab label="Code" icon=Icon::Code pane=Pane::Code on_select=move || show(Pane::Code) />
            </nav>
    }
    .into_any();
    view! {
        <Title text=name />
        <div class="flex h-dvh flex-col overflow-hidden">
            {header}
            {panes}
            {tabs}
        </div>
    }
}

/// A top bar without the theme toggle (the workspace places it itself).
#[component]
fn TopBarPlain(children: Children) -> impl IntoView {
    view! {
        <header class="z-20 shrink-0 border-b border-zinc-200/80 bg-zinc-50/90 backdrop-blur dark:border-zinc-800/80 dark:bg-zinc-950/90">
            <div class="flex h-14 items-center gap-2 px-2 sm:gap-3 sm:px-4">{children()}</div>
        </header>
    }
}

#[component]
fn PaneTab(
    label: &'static str,
    icon: Icon,
    active: Signal<bool>,
    on_select: impl Fn() + 'static,
) -> impl IntoView {
    view! {
        <button
            type="button"
            role="tab"
            aria-selected=move || active.get().to_string()
            on:click=move |_| on_select()
            class="inline-flex h-8 items-center gap-1.5 rounded-lg px-3 text-sm font-medium text-zinc-500 hover:text-zinc-900 focus-visible:outline-none focus-visible:ring-2 focus-visible:ring-indigo-500 aria-selected:bg-zinc-200/70 aria-selected:text-zinc-900 dark:text-zinc-400 dark:hover:text-zinc-100 dark:aria-selected:bg-zinc-800 dark:aria-selected:text-zinc-100"
        >
            <Svg icon=icon />
            {label}
        </button>
    }
}

#[component]
fn BottomTab(
    label: &'static str,
    icon: Icon,
    pane: Pane,
    on_select: impl Fn() + 'static,
) -> impl IntoView {
    let ws = expect_ws();
    let active = move || ws.pane.get() == pane;
    let dot = move || pane == Pane::Preview && ws.unseen_version.get();
    view! {
        <button
            type="button"
            aria-pressed=move || active().to_string()
            on:click=move |_| on_select()
            class="relative flex min-h-12 flex-col items-center justify-center gap-0.5 text-xs text-zinc-500 focus-visible:outline-none focus-visible:ring-2 focus-visible:ring-inset focus-visible:ring-indigo-500 aria-pressed:text-indigo-600 dark:text-zinc-400 dark:aria-pressed:text-indigo-400"
        >
            <Svg icon=icon class="h-5 w-5" />
            <span>{label}</span>
            {move || dot().then(|| view! { <span class="absolute top-2 right-[calc(50%-16px)] h-2 w-2 rounded-full bg-indigo-500" aria-label="new version"></span> })}
        </button>
    }
}

#[component]
fn ProjectMissing(error: ApiError) -> impl IntoView {
    let (title, hint) = match error.kind() {
        ErrorKind::NotFound | ErrorKind::BadInput => (
            "This project does not exist",
            "It may have been deleted, or the link is incomplete.",
        ),
        _ => ("The project could not be loaded", "Try again in a moment."),
    };
    #[cfg(feature = "ssr")]
    if let Some(res) = use_context::<leptos_axum::ResponseOptions>() {
        let status = http::StatusCode::from_u16(error.kind().http_status())
            .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
        res.set_status(status);
    }
    view! {
        <Title text="Project not found" />
        <TopBar>
            <Brand />
        </TopBar>
        <main class="mx-auto max-w-xl px-4 py-24 text-center">
            <h1 class="text-2xl font-semibold">{title}</h1>
            <p class="mt-2 text-zinc-500 dark:text-zinc-400">{hint}</p>
            <p class="mt-1 text-sm break-words text-zinc-400">{error.message().to_owned()}</p>
            <a href="/" class="mt-6 inline-block rounded-xl bg-indigo-600 px-4 py-2 font-medium text-white hover:bg-indigo-500 focus-visible:outline-none focus-visible:ring-2 focus-visible:ring-indigo-500 focus-visible:ring-offset-2 dark:focus-visible:ring-offset-zinc-950">
                "Back to home"
            </a>
        </main>
    }
}

#[component]
fn PageSkeleton() -> impl IntoView {
    view! {
        <div class="mx-auto max-w-3xl space-y-3 px-4 py-6" aria-busy="true" aria-label="Loading">
            <div class="ml-auto h-10 w-2/3 animate-pulse rounded-2xl bg-zinc-200/70 dark:bg-zinc-800/70"></div>
            <div class="h-16 w-3/4 animate-pulse rounded-xl bg-zinc-200/70 dark:bg-zinc-800/70"></div>
        </div>
    }
}
