//! Small building blocks shared by the pages: icons, the theme toggle, the prompt box.

use leptos::prelude::*;

/// Inline SVG icons (no icon font, no network). Paths from a 24x24 grid, stroke-based.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Icon {
    Logo,
    Sun,
    Moon,
    Monitor,
    ArrowUp,
    ArrowLeft,
    Sparkles,
    Alert,
    Folder,
    Eye,
    Code,
    Chat,
    Terminal,
    File,
    Reload,
    External,
    Copy,
    Download,
    Qr,
    Check,
    Wrench,
    Brain,
}

impl Icon {
    fn paths(self) -> &'static str {
        match self {
            Icon::Logo => "M8 7l-5 5 5 5M16 7l5 5-5 5M13.5 4l-3 16",
            Icon::Sun => {
                "M12 3v2M12 19v2M4.2 4.2l1.4 1.4M18.4 18.4l1.4 1.4M3 12h2M19 12h2M4.2 19.8l1.4-1.4M18.4 5.6l1.4-1.4M12 8a4 4 0 100 8 4 4 0 000-8z"
            }
            Icon::Moon => "M21 12.8A9 9 0 1111.2 3a7 7 0 009.8 9.8z",
            Icon::Monitor => "M3 4h18v12H3zM8 20h8M12 16v4",
            Icon::ArrowUp => "M12 19V5M5 12l7-7 7 7",
            Icon::ArrowLeft => "M19 12H5M12 19l-7-7 7-7",
            Icon::Sparkles => {
                "M12 3l1.8 4.7L18.5 9.5l-4.7 1.8L12 16l-1.8-4.7L5.5 9.5l4.7-1.8zM19 15l.9 2.1L22 18l-2.1.9L19 21l-.9-2.1L16 18l2.1-.9z"
            }
            Icon::Alert => {
                "M12 9v4M12 17h.01M10.3 3.9L1.8 18a2 2 0 001.7 3h17a2 2 0 001.7-3L13.7 3.9a2 2 0 00-3.4 0z"
            }
            Icon::Folder => "M3 7a2 2 0 012-2h4l2 2h8a2 2 0 012 2v8a2 2 0 01-2 2H5a2 2 0 01-2-2z",
            Icon::Eye => {
                "M2 12s3.6-7 10-7 10 7 10 7-3.6 7-10 7S2 12 2 12zM12 9a3 3 0 100 6 3 3 0 000-6z"
            }
            Icon::Code => "M16 18l6-6-6-6M8 6l-6 6 6 6",
            Icon::Chat => "M21 12a8 8 0 01-11.6 7.1L4 20l1-4.6A8 8 0 1121 12z",
            Icon::Terminal => "M4 17l6-5-6-5M12 19h8",
            Icon::File => "M14 3H7a2 2 0 00-2 2v14a2 2 0 002 2h10a2 2 0 002-2V8zM14 3v5h5",
            Icon::Reload => "M21 12a9 9 0 11-2.6-6.4M21 4v5h-5",
            Icon::External => {
                "M14 4h6v6M20 4l-9 9M18 14v5a1 1 0 01-1 1H5a1 1 0 01-1-1V7a1 1 0 011-1h5"
            }
            Icon::Copy => "M9 9h10v12H9zM5 15H4a1 1 0 01-1-1V4a1 1 0 011-1h10a1 1 0 011 1v1",
            Icon::Download => "M12 3v12M7 10l5 5 5-5M5 21h14",
            Icon::Check => "M20 6L9 17l-5-5",
            Icon::Wrench => {
                "M14.7 6.3a1 1 0 000 1.4l1.6 1.6a1 1 0 001.4 0l3.8-3.8a6 6 0 01-7.9 7.9l-6.9 6.9a2.1 2.1 0 01-3-3l6.9-6.9a6 6 0 017.9-7.9z"
            }
            Icon::Brain => {
                "M9 3a3 3 0 00-3 3 3 3 0 00-2 5 3 3 0 002 5 3 3 0 003 3h1V3zM15 3a3 3 0 013 3 3 3 0 012 5 3 3 0 01-2 5 3 3 0 01-3 3h-1V3z"
            }
            Icon::Qr => {
                "M4 4h6v6H4zM14 4h6v6h-6zM4 14h6v6H4zM14 14h2v2h-2zM18 14h2v2h-2zM14 18h2v2h-2zM18 18h2v2h-2zM7 7h0M17 7h0M7 17h0"
            }
        }
    }
}

#[component]
pub fn Svg(icon: Icon, #[prop(default = "h-4 w-4")] class: &'static str) -> impl IntoView {
    view! {
        <svg
            class=class
            viewBox="0 0 24 24"
            fill="none"
            stroke="currentColor"
            stroke-width="2"
            stroke-linecap="round"
            stroke-linejoin="round"
            aria-hidden="true"
        >
            <path d=icon.paths() />
        </svg>
    }
}

/// Light / dark / follow the system, remembered in this browser.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Theme {
    System,
    Light,
    Dark,
}

impl Theme {
    fn next(self) -> Theme {
        match self {
            Theme::System => Theme::Light,
            Theme::Light => Theme::Dark,
            Theme::Dark => Theme::System,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Theme::System => "Theme: follows the system. Switch to light",
            Theme::Light => "Theme: light. Switch to dark",
            Theme::Dark => "Theme: dark. Switch to following the system",
        }
    }
}

#[component]
pub fn ThemeToggle() -> impl IntoView {
    let theme = RwSignal::new(Theme::System);
    #[cfg(feature = "hydrate")]
    {
        Effect::new(move |_| {
            let stored = window()
                .local_storage()
                .ok()
                .flatten()
                .and_then(|s| s.get_item("cf-theme").ok().flatten());
            theme.set(match stored.as_deref() {
                Some("light") => Theme::Light,
                Some("dark") => Theme::Dark,
                _ => Theme::System,
            });
        });
    }
    let toggle = move |_| {
        let next = theme.get_untracked().next();
        theme.set(next);
        #[cfg(feature = "hydrate")]
        apply_theme(next);
    };
    view! {
        <button
            type="button"
            on:click=toggle
            class="inline-flex h-11 w-11 items-center justify-center rounded-lg text-zinc-500 sm:h-9 sm:w-9 hover:bg-zinc-200/70 hover:text-zinc-900 focus-visible:outline-none focus-visible:ring-2 focus-visible:ring-indigo-500 dark:text-zinc-400 dark:hover:bg-zinc-800 dark:hover:text-zinc-100"
            aria-label=move || theme.get().label()
            title=move || theme.get().label()
        >
            {move || match theme.get() {
                Theme::System => view! { <Svg icon=Icon::Monitor /> }.into_any(),
                Theme::Light => view! { <Svg icon=Icon::Sun /> }.into_any(),
                Theme::Dark => view! { <Svg icon=Icon::Moon /> }.into_any(),
            }}
        </button>
    }
}

#[cfg(feature = "hydrate")]
fn apply_theme(theme: Theme) {
    let win = window();
    if let Ok(Some(storage)) = win.local_storage() {
        let _ = match theme {
            Theme::System => storage.remove_item("cf-theme"),
            Theme::Light => storage.set_item("cf-theme", "light"),
            Theme::Dark => storage.set_item("cf-theme", "dark"),
        };
    }
    let dark = match theme {
        Theme::Light => false,
        Theme::Dark => true,
        Theme::System => win
            .match_media("(prefers-color-scheme: dark)")
            .ok()
            .flatten()
            .map(|m| m.matches())
            .unwrap_or(false),
    };
    if let Some(root) = document().document_element() {
        let _ = root.class_list().toggle_with_force("dark", dark);
    }
}

/// The top bar shared by every page.
#[component]
pub fn TopBar(children: Children) -> impl IntoView {
    view! {
        <header class="sticky top-0 z-20 border-b border-zinc-200/80 bg-zinc-50/90 backdrop-blur dark:border-zinc-800/80 dark:bg-zinc-950/90">
            <div class="mx-auto flex h-14 max-w-screen-2xl items-center gap-3 px-3 sm:px-5">
                {children()}
                <div class="ml-auto flex items-center gap-1">
                    <ThemeToggle />
                    <AccountLink />
                </div>
            </div>
        </header>
    }
}

/// The signed-in account's initial, linking to the settings (nothing when signed out or with
/// accounts off).
#[component]
pub fn AccountLink() -> impl IntoView {
    let account = Resource::new(|| (), |_| async { crate::api::me().await });
    view! {
        <Suspense fallback=|| ()>
            {move || Suspend::new(async move {
                account.await.ok().filter(|a| a.auth).map(|a| {
                    let email = a.email.unwrap_or_default();
                    let initial = email.chars().next().unwrap_or('?').to_uppercase().to_string();
                    view! {
                        <a
                            href="/settings"
                            data-testid="account-link"
                            class="inline-flex h-11 w-11 items-center justify-center rounded-full focus-visible:outline-none focus-visible:ring-2 focus-visible:ring-indigo-500"
                            aria-label=format!("Account settings ({email})")
                            title=format!("Settings ({email})")
                        >
                            <span class="inline-flex h-8 w-8 items-center justify-center rounded-full bg-indigo-100 text-sm font-semibold text-indigo-700 dark:bg-indigo-950 dark:text-indigo-300">
                                {initial}
                            </span>
                        </a>
                    }
                })
            })}
        </Suspense>
    }
}

/// The brand, linking home.
#[component]
pub fn Brand() -> impl IntoView {
    view! {
        <a
            href="/"
            class="flex min-h-11 items-center gap-2 rounded-lg px-1 py-1 font-semibold tracking-tight focus-visible:outline-none focus-visible:ring-2 focus-visible:ring-indigo-500"
        >
            <span class="flex h-7 w-7 items-center justify-center rounded-lg bg-indigo-600 text-white">
                <Svg icon=Icon::Logo class="h-4 w-4" />
            </span>
            <span>"CodeFlux"</span>
        </a>
    }
}

/// A prominent error box with a sentence a person can act on.
#[component]
pub fn ErrorNote(message: String) -> impl IntoView {
    view! {
        <div
            role="alert"
            class="flex items-start gap-2 rounded-xl border border-red-200 bg-red-50 px-3 py-2 text-sm text-red-800 dark:border-red-900/60 dark:bg-red-950/40 dark:text-red-200"
        >
            <Svg icon=Icon::Alert class="mt-0.5 h-4 w-4 shrink-0" />
            <span class="min-w-0 wrap-anywhere">{message}</span>
        </div>
    }
}

/// The prompt box used on home and for follow-ups: an auto-growing textarea where Enter sends
/// and Shift+Enter starts a new line, with a send button that explains why it is disabled.
///
/// It is a real `<form>` posting to `action`, so it also works before the page is hydrated;
/// once hydrated, submitting calls `on_submit` and the page never reloads.
#[component]
pub fn PromptBox(
    value: RwSignal<String>,
    on_submit: Callback<()>,
    pending: Signal<bool>,
    action: &'static str,
    label: &'static str,
    placeholder: &'static str,
    button_label: &'static str,
    pending_label: &'static str,
    #[prop(default = "prompt")] name: &'static str,
    #[prop(default = 3)] rows: u32,
    /// Controls shown beside the send button (template choice, hidden fields).
    #[prop(optional)]
    children: Option<Children>,
) -> impl IntoView {
    let hydrated = RwSignal::new(false);
    Effect::new(move |_| hydrated.set(true));
    let problem = move || {
        let text = value.get();
        if text.trim().is_empty() {
            Some("Type a description first".to_owned())
        } else {
            codeflux_protocol::validate::prompt(&text)
                .err()
                .map(|e| e.message)
        }
    };
    // Before hydration the form must stay usable as a plain form post.
    let disabled = move || hydrated.get() && (pending.get() || problem().is_some());
    let too_long = move || {
        let n = value.with(|v| v.chars().count());
        (n > codeflux_protocol::MAX_PROMPT_CHARS)
            .then(|| format!("{n} / {} characters", codeflux_protocol::MAX_PROMPT_CHARS))
    };
    let send = move || {
        if problem().is_none() && !pending.get_untracked() {
            on_submit.run(());
        }
    };
    let id = format!("{name}-box");
    let textarea_class = if rows >= 3 {
        "block max-h-[40dvh] min-h-[3lh] w-full resize-none bg-transparent px-4 pt-3.5 pb-2 text-base text-zinc-900 [field-sizing:content] placeholder:text-zinc-400 focus:outline-none dark:text-zinc-100 dark:placeholder:text-zinc-500"
    } else {
        "block max-h-[40dvh] min-h-[1lh] w-full resize-none bg-transparent px-4 pt-3 pb-1 text-base text-zinc-900 [field-sizing:content] placeholder:text-zinc-400 focus:outline-none dark:text-zinc-100 dark:placeholder:text-zinc-500"
    };
    view! {
        <form
            method="post"
            action=action
            class="rounded-2xl border border-zinc-200 bg-white shadow-sm focus-within:border-indigo-400 focus-within:ring-4 focus-within:ring-indigo-500/15 dark:border-zinc-800 dark:bg-zinc-900 dark:focus-within:border-indigo-500"
            on:submit=move |ev| {
                ev.prevent_default();
                send();
            }
        >
            <label for=id.clone() class="sr-only">{label}</label>
            <textarea
                id=id
                name=name
                rows=rows
                placeholder=placeholder
                class=textarea_class
                prop:value=move || value.get()
                on:input:target=move |ev| value.set(ev.target().value())
                on:keydown=move |ev| {
                    if ev.key() == "Enter" && !ev.shift_key() && !ev.is_composing() {
                        ev.prevent_default();
                        send();
                    }
                }
            ></textarea>
            <div class="flex flex-wrap items-center gap-2 px-2.5 pb-2.5">
                {children.map(|c| c())}
                <span class="ml-auto text-xs text-red-600 dark:text-red-400" aria-live="polite">{too_long}</span>
                <button
                    type="submit"
                    disabled=disabled
                    title=move || problem().unwrap_or_default()
                    class="inline-flex h-11 shrink-0 items-center gap-1.5 rounded-xl bg-indigo-600 px-3.5 sm:h-9 text-sm font-medium text-white hover:bg-indigo-500 focus-visible:outline-none focus-visible:ring-2 focus-visible:ring-indigo-500 focus-visible:ring-offset-2 disabled:cursor-not-allowed disabled:bg-zinc-300 disabled:text-zinc-500 dark:focus-visible:ring-offset-zinc-900 dark:disabled:bg-zinc-700 dark:disabled:text-zinc-400"
                >
                    <span>{move || if pending.get() { pending_label } else { button_label }}</span>
                    <Svg icon=Icon::ArrowUp class="h-4 w-4" />
                </button>
            </div>
        </form>
    }
}
