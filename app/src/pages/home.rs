//! Home: one big prompt box, the template choice, example prompts, and the projects.

use codeflux_protocol::{Project, Template};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_navigate;

use crate::api::{CreateProject, get_projects, system_status};
use crate::components::{Brand, ErrorNote, Icon, PromptBox, Svg, TopBar};
use crate::model_picker::ModelPicker;
use crate::time::{RelativeTime, Stamped};

const EXAMPLES: [(&str, &str); 4] = [
    (
        "Habit tracker",
        "Build a habit tracker with daily check-ins, streaks and dark mode",
    ),
    (
        "Recipe book",
        "A recipe book with search, tags and a shopping list",
    ),
    (
        "Pomodoro timer",
        "A pomodoro timer with a task list and session statistics",
    ),
    (
        "Landing page",
        "A landing page for a coffee roastery with a menu and opening hours",
    ),
];

#[component]
pub fn HomePage() -> impl IntoView {
    let projects = Resource::new(|| (), |_| async { get_projects().await.map(Stamped::now) });
    let status = Resource::new(|| (), |_| async { system_status().await });
    let create = ServerAction::<CreateProject>::new();
    let prompt = RwSignal::new(String::new());
    let template = RwSignal::new(Template::default());
    let model = RwSignal::new(String::new());

    let navigate = use_navigate();
    Effect::new(move |_| {
        if let Some(Ok(project)) = create.value().get() {
            navigate(&format!("/projects/{}", project.id), Default::default());
        }
    });

    let submit = Callback::new(move |()| {
        if create.pending().get_untracked() {
            return;
        }
        create.dispatch(CreateProject {
            prompt: prompt.get_untracked(),
            template: template.get_untracked().as_str().to_owned(),
            model: model.get_untracked(),
        });
    });
    let error = move || match create.value().get() {
        Some(Err(e)) => Some(view! { <ErrorNote message=e.message().to_owned() /> }),
        _ => None,
    };

    view! {
        <Title text="" />
        <TopBar>
            <Brand />
        </TopBar>
        <main class="mx-auto w-full max-w-3xl px-4 pb-24 sm:px-6">
            <section class="pt-12 pb-8 text-center sm:pt-20">
                <h1 class="text-3xl font-semibold tracking-tight text-balance sm:text-5xl">
                    "What do you want to build?"
                </h1>
                <p class="mx-auto mt-3 max-w-xl text-base text-zinc-500 text-balance sm:text-lg dark:text-zinc-400">
                    "Describe an app in plain words. An agent writes it in a sandbox while you watch, and you keep refining it."
                </p>
            </section>

            <Suspense fallback=|| ()>
                {move || Suspend::new(async move {
                    status.await.ok().and_then(|s| s.llm_problem).map(|problem| view! {
                        <div role="status" class="mb-4 rounded-xl border border-amber-300 bg-amber-50 px-4 py-3 text-sm text-amber-900 dark:border-amber-800/70 dark:bg-amber-950/40 dark:text-amber-100">
                            <p class="font-medium">"No AI model is configured yet"</p>
                            <p class="mt-1 wrap-anywhere">{problem}</p>
                        </div>
                    })
                })}
            </Suspense>
            <PromptBox
                value=prompt
                on_submit=submit
                pending=create.pending().into()
                action="/api/projects/create"
                label="Describe the app you want to build"
                placeholder="Build me a habit tracker with dark mode…"
                button_label="Start Creating"
                pending_label="Creating…"
                rows=4
            >
                <TemplatePicker template />
                <ModelPicker model />
            </PromptBox>
            <div class="mt-3" aria-live="polite">{error}</div>

            <div class="mt-4 flex flex-wrap justify-center gap-2" aria-label="Example prompts">
                {EXAMPLES
                    .into_iter()
                    .map(|(label, text)| {
                        view! {
                            <button
                                type="button"
                                class="min-h-11 rounded-full border border-zinc-200 bg-white px-3 py-1.5 text-sm sm:min-h-0 text-zinc-600 hover:border-zinc-300 hover:text-zinc-900 focus-visible:outline-none focus-visible:ring-2 focus-visible:ring-indigo-500 dark:border-zinc-800 dark:bg-zinc-900 dark:text-zinc-300 dark:hover:border-zinc-700 dark:hover:text-white"
                                title=text
                                on:click=move |_| prompt.set(text.to_owned())
                            >
                                {label}
                            </button>
                        }
                    })
                    .collect_view()}
            </div>

            <section class="mt-16" aria-labelledby="projects-heading">
                <h2 id="projects-heading" class="mb-3 text-sm font-semibold tracking-wide text-zinc-500 uppercase dark:text-zinc-400">
                    "Your projects"
                </h2>
                <Suspense fallback=|| view! { <ProjectSkeleton /> }>
                    {move || Suspend::new(async move {
                        match projects.await {
                            Ok(list) => view! { <ProjectList list /> }.into_any(),
                            Err(e) => view! { <ErrorNote message=e.message().to_owned() /> }.into_any(),
                        }
                    })}
                </Suspense>
            </section>
        </main>
    }
}

/// Vite React or Next.js, as a small segmented control.
#[component]
fn TemplatePicker(template: RwSignal<Template>) -> impl IntoView {
    view! {
        <div role="radiogroup" aria-label="Template" class="inline-flex rounded-lg bg-zinc-100 p-0.5 text-xs dark:bg-zinc-800">
            {Template::ALL
                .into_iter()
                .map(|t| {
                    view! {
                        <button
                            type="button"
                            role="radio"
                            aria-checked=move || (template.get() == t).to_string()
                            on:click=move |_| template.set(t)
                            class="min-h-11 min-w-11 rounded-md px-2.5 py-1 font-medium text-zinc-500 sm:min-h-0 sm:min-w-0 focus-visible:outline-none focus-visible:ring-2 focus-visible:ring-indigo-500 aria-checked:bg-white aria-checked:text-zinc-900 aria-checked:shadow-sm dark:text-zinc-400 dark:aria-checked:bg-zinc-950 dark:aria-checked:text-zinc-100"
                        >
                            {t.label()}
                        </button>
                    }
                })
                .collect_view()}
            <input type="hidden" name="template" prop:value=move || template.get().as_str() />
        </div>
    }
}

#[component]
fn ProjectList(list: Stamped<Vec<Project>>) -> impl IntoView {
    let fetched = list.at;
    if list.data.is_empty() {
        return view! {
            <div class="rounded-xl border border-dashed border-zinc-300 px-6 py-10 text-center text-zinc-500 dark:border-zinc-700 dark:text-zinc-400">
                <Svg icon=Icon::Sparkles class="mx-auto mb-2 h-6 w-6" />
                <p>"No projects yet. Describe an app above and press Start Creating."</p>
            </div>
        }
        .into_any();
    }
    view! {
        <ul class="grid gap-3 sm:grid-cols-2">
            {list
                .data
                .into_iter()
                .map(|p| {
                    view! {
                        <li class="min-w-0">
                            <a
                                href=format!("/projects/{}", p.id)
                                class="group block h-full rounded-xl border border-zinc-200 bg-white p-4 hover:border-zinc-300 focus-visible:outline-none focus-visible:ring-2 focus-visible:ring-indigo-500 dark:border-zinc-800 dark:bg-zinc-900 dark:hover:border-zinc-700"
                            >
                                <div class="flex items-center gap-2">
                                    <Svg icon=Icon::Folder class="h-4 w-4 shrink-0 text-zinc-400" />
                                    <span class="truncate font-medium group-hover:text-indigo-600 dark:group-hover:text-indigo-400">{p.name}</span>
                                    <span class="ml-auto shrink-0 rounded-md bg-zinc-100 px-1.5 py-0.5 text-[11px] text-zinc-500 dark:bg-zinc-800 dark:text-zinc-400">
                                        {p.template.label()}
                                    </span>
                                </div>
                                <p class="mt-2 line-clamp-2 text-sm wrap-anywhere text-zinc-600 dark:text-zinc-400">{p.description}</p>
                                <p class="mt-2 text-xs text-zinc-400 dark:text-zinc-500">
                                    <RelativeTime at=p.created_at fetched />
                                </p>
                            </a>
                        </li>
                    }
                })
                .collect_view()}
        </ul>
    }
    .into_any()
}

#[component]
fn ProjectSkeleton() -> impl IntoView {
    view! {
        <div class="grid gap-3 sm:grid-cols-2" aria-busy="true" aria-label="Loading projects">
            {(0..4)
                .map(|_| view! { <div class="h-28 animate-pulse rounded-xl bg-zinc-200/70 dark:bg-zinc-800/70"></div> })
                .collect_view()}
        </div>
    }
}
