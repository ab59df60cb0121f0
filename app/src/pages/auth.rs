//! Sign in and sign up. Real forms posting to the server functions (they work before the page
//! is hydrated: the server answers with a redirect); once hydrated, they submit without a
//! reload and go on to where the person was headed.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use crate::api::{SignIn, SignUp, safe_next};
use crate::components::{Brand, ErrorNote, TopBar};

pub(crate) const INPUT: &str = "mt-1 block h-11 w-full rounded-xl border border-zinc-300 bg-white px-3 text-base text-zinc-900 placeholder:text-zinc-400 focus:border-indigo-500 focus:outline-none focus:ring-2 focus:ring-indigo-500/30 dark:border-zinc-700 dark:bg-zinc-900 dark:text-zinc-100";
pub(crate) const BUTTON: &str = "inline-flex h-11 w-full items-center justify-center rounded-xl bg-indigo-600 px-4 font-medium text-white hover:bg-indigo-500 focus-visible:outline-none focus-visible:ring-2 focus-visible:ring-indigo-500 focus-visible:ring-offset-2 disabled:opacity-60 dark:focus-visible:ring-offset-zinc-950";
pub(crate) const LABEL: &str = "block text-sm font-medium text-zinc-700 dark:text-zinc-300";

/// After signing in or up: a full load of where the person was going (every part of the page
/// then knows who is signed in).
fn go(next: &str) {
    #[cfg(feature = "hydrate")]
    if let Err(e) = window().location().set_href(&safe_next(next)) {
        leptos::logging::warn!("navigation failed: {e:?}");
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = safe_next(next);
}

#[component]
fn Card(title: &'static str, children: Children) -> impl IntoView {
    view! {
        <TopBar>
            <Brand />
        </TopBar>
        <main class="mx-auto w-full max-w-sm px-4 pt-10 pb-16 sm:pt-20">
            <h1 class="text-2xl font-semibold tracking-tight">{title}</h1>
            {children()}
        </main>
    }
}

#[component]
pub fn SignInPage() -> impl IntoView {
    let query = use_query_map();
    let next = Memo::new(move |_| query.read().get("next").unwrap_or_default());
    let action = ServerAction::<SignIn>::new();
    let (email, password) = (RwSignal::new(String::new()), RwSignal::new(String::new()));
    Effect::new(move |_| {
        if let Some(Ok(_)) = action.value().get() {
            go(&next.get_untracked());
        }
    });
    let error = move || match action.value().get() {
        Some(Err(e)) => Some(view! { <ErrorNote message=e.message().to_owned() /> }),
        _ => None,
    };
    // A real form (it works before hydration); once hydrated, submitting calls the action.
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        if !action.pending().get_untracked() {
            action.dispatch(SignIn {
                email: email.get_untracked(),
                password: password.get_untracked(),
                next: next.get_untracked(),
            });
        }
    };
    view! {
        <Title text="Sign in" />
        <Card title="Sign in to CodeFlux">
            <form method="post" action="/api/auth/sign_in" class="mt-6 space-y-4" on:submit=submit>
                <input type="hidden" name="next" prop:value=move || next.get() />
                <label class=LABEL>
                    "Email"
                    <input class=INPUT type="email" name="email" required autocomplete="username" inputmode="email" bind:value=email />
                </label>
                <label class=LABEL>
                    "Password"
                    <input class=INPUT type="password" name="password" required autocomplete="current-password" bind:value=password />
                </label>
                <div aria-live="polite">{error}</div>
                <button class=BUTTON type="submit" disabled=move || action.pending().get()>
                    {move || if action.pending().get() { "Signing in…" } else { "Sign in" }}
                </button>
            </form>
            <p class="mt-6 text-sm text-zinc-500 dark:text-zinc-400">
                "No account yet? "
                <a class="font-medium text-indigo-600 hover:underline dark:text-indigo-400" href=move || format!("/sign-up?next={}", urlencode(&next.get()))>
                    "Create one"
                </a>
                " (the first account on a server becomes its admin; after that you need an invite)."
            </p>
        </Card>
    }
}

#[component]
pub fn SignUpPage() -> impl IntoView {
    let query = use_query_map();
    let next = Memo::new(move |_| query.read().get("next").unwrap_or_default());
    let invite = Memo::new(move |_| query.read().get("invite").unwrap_or_default());
    let action = ServerAction::<SignUp>::new();
    let (email, password) = (RwSignal::new(String::new()), RwSignal::new(String::new()));
    Effect::new(move |_| {
        if let Some(Ok(_)) = action.value().get() {
            go(&next.get_untracked());
        }
    });
    let error = move || match action.value().get() {
        Some(Err(e)) => Some(view! { <ErrorNote message=e.message().to_owned() /> }),
        _ => None,
    };
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        if !action.pending().get_untracked() {
            action.dispatch(SignUp {
                email: email.get_untracked(),
                password: password.get_untracked(),
                invite: invite.get_untracked(),
                next: next.get_untracked(),
            });
        }
    };
    view! {
        <Title text="Create an account" />
        <Card title="Create your account">
            {move || (!invite.get().is_empty()).then(|| view! {
                <p class="mt-2 text-sm text-zinc-500 dark:text-zinc-400">"You were invited. Choose your email and a password."</p>
            })}
            <form method="post" action="/api/auth/sign_up" class="mt-6 space-y-4" on:submit=submit>
                <input type="hidden" name="next" prop:value=move || next.get() />
                <input type="hidden" name="invite" prop:value=move || invite.get() />
                <label class=LABEL>
                    "Email"
                    <input class=INPUT type="email" name="email" required autocomplete="username" inputmode="email" bind:value=email />
                </label>
                <label class=LABEL>
                    "Password"
                    <input class=INPUT type="password" name="password" required minlength="8" autocomplete="new-password" bind:value=password />
                    <span class="mt-1 block text-xs font-normal text-zinc-500 dark:text-zinc-400">"At least 8 characters."</span>
                </label>
                <div aria-live="polite">{error}</div>
                <button class=BUTTON type="submit" disabled=move || action.pending().get()>
                    {move || if action.pending().get() { "Creating…" } else { "Create account" }}
                </button>
            </form>
            <p class="mt-6 text-sm text-zinc-500 dark:text-zinc-400">
                "Have an account? "
                <a class="font-medium text-indigo-600 hover:underline dark:text-indigo-400" href=move || format!("/sign-in?next={}", urlencode(&next.get()))>
                    "Sign in"
                </a>
            </p>
        </Card>
    }
}

/// Percent-encodes a query value.
pub(crate) fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
