//! The preview pane: the project's live app in an iframe, with its address, reload and
//! open-in-a-new-tab. While the sandbox starts or revives, the frame shows the server's
//! "Starting the preview…" page, which reloads itself until the app answers.

use leptos::prelude::*;

use crate::components::{Icon, Svg};
use crate::pages::project::use_ws;

#[component]
pub fn PreviewPane() -> impl IntoView {
    let ws = use_ws();
    let base = ws.preview_url.get_value();
    let src = move || {
        let n = ws.preview_nonce.get();
        let url = ws
            .current()
            .map(|f| f.sandbox_url)
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| base.clone());
        if n == 0 {
            url
        } else {
            format!("{url}?reload={n}")
        }
    };
    let address = move || {
        ws.current()
            .map(|f| f.sandbox_url)
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| ws.preview_url.get_value())
    };
    let older = move || {
        let current = ws.current().map(|f| f.id);
        current.is_some() && current != ws.latest().map(|f| f.id)
    };
    view! {
        <div class="flex h-10 shrink-0 items-center gap-1 border-b border-zinc-200 px-2 dark:border-zinc-800">
            <button
                type="button"
                aria-label="Reload the preview"
                title="Reload"
                on:click=move |_| ws.preview_nonce.update(|n| *n += 1)
                class="inline-flex h-11 w-11 items-center justify-center rounded-lg text-zinc-500 sm:h-8 sm:w-8 hover:bg-zinc-200/70 hover:text-zinc-900 focus-visible:outline-none focus-visible:ring-2 focus-visible:ring-indigo-500 dark:text-zinc-400 dark:hover:bg-zinc-800 dark:hover:text-zinc-100"
            >
                <Svg icon=Icon::Reload />
            </button>
            <span class="min-w-0 flex-1 truncate rounded-md bg-zinc-100 px-2 py-1 font-mono text-xs text-zinc-600 dark:bg-zinc-900 dark:text-zinc-400" title=address>
                {address}
            </span>
            <a
                href=address
                target="_blank"
                rel="noopener"
                aria-label="Open the preview in a new tab"
                title="Open in a new tab"
                class="inline-flex h-11 w-11 items-center justify-center rounded-lg text-zinc-500 sm:h-8 sm:w-8 hover:bg-zinc-200/70 hover:text-zinc-900 focus-visible:outline-none focus-visible:ring-2 focus-visible:ring-indigo-500 dark:text-zinc-400 dark:hover:bg-zinc-800 dark:hover:text-zinc-100"
            >
                <Svg icon=Icon::External />
            </a>
        </div>
        {move || older().then(|| view! {
            <p class="shrink-0 border-b border-amber-200 bg-amber-50 px-3 py-1.5 text-xs text-amber-800 dark:border-amber-900/60 dark:bg-amber-950/40 dark:text-amber-200">
                "Showing an earlier version. Your next message continues from the latest one."
            </p>
        })}
        {move || match ws.show.value().get() {
            Some(Err(e)) => Some(view! {
                <p role="status" class="shrink-0 border-b border-zinc-200 bg-zinc-100 px-3 py-1.5 text-xs text-zinc-700 dark:border-zinc-800 dark:bg-zinc-900 dark:text-zinc-300">
                    {e.message().to_owned()}
                </p>
            }),
            _ => None,
        }}
        {move || ws.show.pending().get().then(|| view! {
            <p class="shrink-0 border-b border-zinc-200 px-3 py-1.5 text-xs text-zinc-500 dark:border-zinc-800">"Switching versions…"</p>
        })}
        <div class="relative min-h-0 flex-1 bg-white">
            <iframe
                src=src
                title="Preview of the app"
                class="absolute inset-0 h-full w-full border-0"
                allow="clipboard-read; clipboard-write"
            ></iframe>
        </div>
    }
}
