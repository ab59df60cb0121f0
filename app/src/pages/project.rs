//! A project's workspace: the conversation and the follow-up box.

use codeflux_protocol::{ErrorKind, Message, MessageKind, Project, Role};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

use crate::api::{ApiError, CreateMessage, get_messages, get_project};
use crate::components::{Brand, ErrorNote, Icon, PromptBox, Svg, TopBar};
use crate::time::{RelativeTime, Stamped};

#[component]
pub fn ProjectPage() -> impl IntoView {
    let params = use_params_map();
    let id = Memo::new(move |_| params.read().get("id").unwrap_or_default());
    let project = Resource::new(move || id.get(), |id| async move { get_project(id).await });
    let messages = Resource::new(
        move || id.get(),
        |id| async move { get_messages(id).await.map(Stamped::now) },
    );

    view! {
        <Suspense fallback=|| view! { <PageSkeleton /> }>
            {move || Suspend::new(async move {
                match project.await {
                    Ok(p) => view! { <Workspace project=p messages /> }.into_any(),
                    Err(e) => view! { <ProjectMissing error=e /> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn Workspace(
    project: Project,
    messages: Resource<Result<Stamped<Vec<Message>>, ApiError>>,
) -> impl IntoView {
    let send = ServerAction::<CreateMessage>::new();
    let draft = RwSignal::new(String::new());
    let project_id = project.id.to_string();

    // A sent message is shown at once; the list is refreshed when the server has stored it.
    Effect::new(move |_| {
        if let Some(Ok(_)) = send.value().get() {
            draft.set(String::new());
            messages.refetch();
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
    let pending_text = move || {
        send.input()
            .get()
            .map(|input| view! { <UserBubble text=input.content pending=true /> })
    };
    let send_error = move || match send.value().get() {
        Some(Err(e)) => Some(view! { <ErrorNote message=e.message().to_owned() /> }),
        _ => None,
    };

    view! {
        <Title text=project.name.clone() />
        <TopBar>
            <a
                href="/"
                aria-label="Back to home"
                class="inline-flex h-9 w-9 items-center justify-center rounded-lg text-zinc-500 hover:bg-zinc-200/70 hover:text-zinc-900 focus-visible:outline-none focus-visible:ring-2 focus-visible:ring-indigo-500 dark:text-zinc-400 dark:hover:bg-zinc-800 dark:hover:text-zinc-100"
            >
                <Svg icon=Icon::ArrowLeft />
            </a>
            <div class="min-w-0">
                <h1 class="truncate text-sm font-semibold">{project.name.clone()}</h1>
            </div>
            <span class="shrink-0 rounded-md bg-zinc-100 px-1.5 py-0.5 text-[11px] text-zinc-500 dark:bg-zinc-800 dark:text-zinc-400">
                {project.template.label()}
            </span>
        </TopBar>
        <main class="mx-auto flex min-h-[calc(100dvh-3.5rem)] w-full max-w-3xl flex-col px-3 sm:px-5">
            <section aria-label="Conversation" class="flex-1 space-y-4 py-5">
                <Transition fallback=|| view! { <PageSkeleton /> }>
                    {move || Suspend::new(async move {
                        match messages.await {
                            Ok(list) => {
                                let fetched = list.at;
                                list.data
                                    .into_iter()
                                    .map(|m| view! { <MessageView message=m fetched /> })
                                    .collect_view()
                                    .into_any()
                            }
                            Err(e) => view! { <ErrorNote message=e.message().to_owned() /> }.into_any(),
                        }
                    })}
                </Transition>
                {pending_text}
            </section>
            <div class="sticky bottom-0 bg-zinc-50 pt-2 pb-[max(0.75rem,env(safe-area-inset-bottom))] dark:bg-zinc-950">
                <div class="mb-2" aria-live="polite">{send_error}</div>
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
        </main>
    }
}

#[component]
fn MessageView(message: Message, fetched: chrono::DateTime<chrono::Utc>) -> impl IntoView {
    match (message.role, message.kind) {
        (Role::User, _) => view! { <UserBubble text=message.content pending=false /> }.into_any(),
        (Role::Assistant, MessageKind::Error) => view! {
            <div class="rounded-xl border border-red-200 bg-red-50 px-4 py-3 text-sm dark:border-red-900/60 dark:bg-red-950/40">
                <p class="flex items-center gap-1.5 font-medium text-red-800 dark:text-red-200">
                    <Svg icon=Icon::Alert /> "Something went wrong"
                </p>
                <p class="mt-1 whitespace-pre-wrap wrap-anywhere text-red-900/90 dark:text-red-100/90">{message.content}</p>
            </div>
        }
        .into_any(),
        (Role::Assistant, MessageKind::Result) => {
            let fragment = message.fragment.map(|f| {
                let count = f.files.len();
                view! {
                    <div class="mt-2 flex items-center gap-3 rounded-xl border border-zinc-200 bg-white px-3 py-2.5 dark:border-zinc-800 dark:bg-zinc-900">
                        <span class="flex h-8 w-8 items-center justify-center rounded-lg bg-indigo-50 text-indigo-600 dark:bg-indigo-950 dark:text-indigo-300">
                            <Svg icon=Icon::Sparkles />
                        </span>
                        <div class="min-w-0">
                            <p class="truncate text-sm font-medium">{f.title}</p>
                            <p class="text-xs text-zinc-500 dark:text-zinc-400">
                                {format!("{count} file{}", if count == 1 { "" } else { "s" })} " · "
                                <RelativeTime at=f.created_at fetched />
                            </p>
                        </div>
                    </div>
                }
            });
            view! {
                <div class="text-sm leading-relaxed">
                    <p class="whitespace-pre-wrap wrap-anywhere">{message.content}</p>
                    {fragment}
                </div>
            }
            .into_any()
        }
    }
}

#[component]
fn UserBubble(text: String, pending: bool) -> impl IntoView {
    view! {
        <div class="flex justify-end">
            <p
                class="max-w-[85%] rounded-2xl rounded-br-md bg-zinc-200/80 px-4 py-2.5 text-sm whitespace-pre-wrap wrap-anywhere dark:bg-zinc-800"
                class:opacity-60=pending
                data-role="user"
            >
                {text}
            </p>
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
            <p class="mt-1 text-sm text-zinc-400 wrap-anywhere">{error.message().to_owned()}</p>
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
