use leptos::prelude::*;
use leptos_meta::Title;

use crate::components::{Brand, TopBar};

#[component]
pub fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(res) = use_context::<leptos_axum::ResponseOptions>() {
        res.set_status(http::StatusCode::NOT_FOUND);
    }
    view! {
        <Title text="Not found" />
        <TopBar>
            <Brand />
        </TopBar>
        <main class="mx-auto max-w-xl px-4 py-24 text-center">
            <h1 class="text-2xl font-semibold">"This page does not exist"</h1>
            <p class="mt-2 text-zinc-500 dark:text-zinc-400">"The address may be mistyped, or the page was moved."</p>
            <a href="/" class="mt-6 inline-block rounded-xl bg-indigo-600 px-4 py-2 font-medium text-white hover:bg-indigo-500 focus-visible:outline-none focus-visible:ring-2 focus-visible:ring-indigo-500 focus-visible:ring-offset-2 dark:focus-visible:ring-offset-zinc-950">
                "Back to home"
            </a>
        </main>
    }
}
