//! A project's workspace: the conversation with its live run, and the preview and code panes.
//! Desktop: chat beside the preview/code pane. Phone (< 640 px): one pane at a time under a
//! Chat / Preview / Code tab bar.

use codeflux_protocol::{ErrorKind, Fragment, Message, MessageKind, ProjectView, Role, RunStatus};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;
use uuid::Uuid;

use crate::api::{ApiError, CancelRuns, CreateMessage, ShowVersion, get_project_view};
use crate::components::{Brand, ErrorNote, Icon, PromptBox, Svg, ThemeToggle, TopBar};
use crate::live::{Live, LiveRun, Step, display_text};
use crate::pages::code::CodePane;
use crate::pages::preview::PreviewPane;
use crate::time::{RelativeTime, Stamped};

/// Which pane a phone shows (and, for Preview/Code, which the desktop's right pane shows).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Pane {
    Chat,
    Preview,
    Code,
}

/// The workspace's shared state.
#[derive(Clone, Copy)]
pub struct Ws {
    pub project_id: Uuid,
    pub messages: RwSignal<Vec<Message>>,
    pub live: Live,
    /// The fragment shown in the preview and code panes; None = the latest.
    pub selected: RwSignal<Option<Uuid>>,
    pub pane: RwSignal<Pane>,
    pub preview_nonce: RwSignal<u32>,
    pub preview_url: StoredValue<String>,
    /// A new version arrived while the preview was not in view (phone tab dot).
    pub unseen_version: RwSignal<bool>,
    /// Switches the live preview to a chosen version.
    pub show: ServerAction<ShowVersion>,
}

impl Ws {
    /// Every version, oldest first.
    pub fn fragments(&self) -> Vec<Fragment> {
        self.messages
            .with(|m| m.iter().filter_map(|m| m.fragment.clone()).collect())
    }

    pub fn latest(&self) -> Option<Fragment> {
        self.messages
            .with(|m| m.iter().rev().find_map(|m| m.fragment.clone()))
    }

    /// The version the panes show.
    pub fn current(&self) -> Option<Fragment> {
        match self.selected.get() {
            Some(id) => self
                .fragments()
                .into_iter()
                .find(|f| f.id == id)
                .or_else(|| self.latest()),
            None => self.latest(),
        }
    }
}

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
            .map(|r| LiveRun {
                run_id: r.id,
                message_id: r.message_id,
                started: r.status == RunStatus::Running,
                steps: Vec::new(),
                files: Vec::new(),
                notice: None,
            })
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
    };
    provide_context(ws);

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
                ws.show.dispatch(ShowVersion {
                    project_id: pid.to_string(),
                    fragment_id: latest.to_string(),
                });
            }
        });
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
                    class="inline-flex h-9 w-9 shrink-0 items-center justify-center rounded-lg text-zinc-500 hover:bg-zinc-200/70 hover:text-zinc-900 focus-visible:outline-none focus-visible:ring-2 focus-visible:ring-indigo-500 dark:text-zinc-400 dark:hover:bg-zinc-800 dark:hover:text-zinc-100"
                >
                    <Svg icon=Icon::ArrowLeft />
                </a>
                <h1 class="min-w-0 truncate text-sm font-semibold">{project.name.clone()}</h1>
                <span class="hidden shrink-0 rounded-md bg-zinc-100 px-1.5 py-0.5 text-[11px] text-zinc-500 sm:inline dark:bg-zinc-800 dark:text-zinc-400">
                    {project.template.label()}
                </span>
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
                            class="inline-flex h-8 items-center gap-1.5 rounded-lg border border-zinc-300 px-2.5 text-xs font-medium hover:bg-zinc-100 focus-visible:outline-none focus-visible:ring-2 focus-visible:ring-indigo-500 disabled:opacity-50 dark:border-zinc-700 dark:hover:bg-zinc-800"
                        >
                            <span class="h-2.5 w-2.5 rounded-sm bg-current"></span>
                            "Stop"
                        </button>
                    })}
                </span>
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

fn expect_ws() -> Ws {
    use_context::<Ws>().unwrap_or_else(|| Ws {
        project_id: Uuid::nil(),
        messages: RwSignal::new(Vec::new()),
        live: Live::new(),
        selected: RwSignal::new(None),
        pane: RwSignal::new(Pane::Chat),
        preview_nonce: RwSignal::new(0),
        preview_url: StoredValue::new(String::new()),
        unseen_version: RwSignal::new(false),
        show: ServerAction::new(),
    })
}

pub fn use_ws() -> Ws {
    expect_ws()
}

#[component]
fn Conversation(fetched: chrono::DateTime<chrono::Utc>) -> impl IntoView {
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
                        class="mt-2 inline-flex h-8 items-center rounded-lg border border-red-300 px-2.5 text-xs font-medium text-red-800 hover:bg-red-100 focus-visible:outline-none focus-visible:ring-2 focus-visible:ring-red-500 dark:border-red-800 dark:text-red-200 dark:hover:bg-red-900/40"
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

#[component]
fn FollowUp() -> impl IntoView {
    let ws = expect_ws();
    let send = ServerAction::<CreateMessage>::new();
    let draft = RwSignal::new(String::new());
    let project_id = ws.project_id.to_string();
    Effect::new(move |_| {
        if let Some(Ok(m)) = send.value().get() {
            draft.set(String::new());
            ws.messages.update(|list| {
                if !list.iter().any(|x| x.id == m.id) {
                    list.push(m);
                }
            });
        }
    });
    let submit = {
        let project_id = project_id.clone();
        Callback::new(move |()| {
            send.dispatch(CreateMessage {
                project_id: project_id.clone(),
                content: draft.get_untracked(),
            });
        })
    };
    let pending = move || {
        send.input()
            .get()
            .map(|input| view! {
                <div class="flex justify-end px-3 pb-2 sm:px-4">
                    <p class="max-w-[88%] rounded-2xl rounded-br-md bg-zinc-200/60 px-3.5 py-2 text-sm whitespace-pre-wrap wrap-anywhere opacity-70 dark:bg-zinc-800/60">{input.content}</p>
                </div>
            })
    };
    let error = move || match send.value().get() {
        Some(Err(e)) => Some(
            view! { <div class="px-3 pb-2 sm:px-4"><ErrorNote message=e.message().to_owned() /></div> },
        ),
        _ => None,
    };
    view! {
        <div class="shrink-0">
            {pending}
            {error}
            <div class="border-t border-zinc-200 bg-zinc-50 px-3 pt-3 pb-3 sm:px-4 dark:border-zinc-800 dark:bg-zinc-950">
                <PromptBox
                    value=draft
                    on_submit=submit
                    pending=send.pending().into()
                    action="/api/messages/create"
                    name="content"
                    label="Ask for a change"
                    placeholder="Ask for a change…"
                    button_label="Send"
                    pending_label="Sending…"
                    rows=1
                >
                    <input type="hidden" name="project_id" value=project_id />
                </PromptBox>
            </div>
        </div>
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
