//! "Open on your phone": the project page's public address as a QR code (made on the server).

use leptos::prelude::*;

use super::state::expect_ws;
use crate::api::ShareLink;
use crate::components::{ErrorNote, Icon, Svg};

#[component]
pub(super) fn ShareButton() -> impl IntoView {
    let ws = expect_ws();
    let open = RwSignal::new(false);
    let link = ServerAction::<ShareLink>::new();
    let show = move |_| {
        open.set(true);
        if link.value().get_untracked().is_none() {
            link.dispatch(ShareLink {
                id: ws.project_id.to_string(),
            });
        }
    };
    view! {
        <button
            type="button"
            on:click=show
            aria-label="Open on your phone (QR code)"
            title="Open on your phone"
            class="inline-flex h-11 min-w-11 shrink-0 items-center justify-center gap-1.5 rounded-lg px-2 text-sm text-zinc-500 hover:bg-zinc-200/70 hover:text-zinc-900 focus-visible:outline-none focus-visible:ring-2 focus-visible:ring-indigo-500 sm:h-9 dark:text-zinc-400 dark:hover:bg-zinc-800 dark:hover:text-zinc-100"
        >
            <Svg icon=Icon::Qr />
            <span class="hidden lg:inline">"Open on your phone"</span>
        </button>
        // In a portal: the header (backdrop-blur) would otherwise be the dialog's frame.
        <leptos::portal::Portal>
        {move || open.get().then(|| view! {
            <div
                class="fixed inset-0 z-50 flex items-end justify-center bg-black/40 p-4 sm:items-center"
                on:click=move |_| open.set(false)
            >
                <div
                    role="dialog"
                    aria-modal="true"
                    aria-labelledby="share-title"
                    class="w-full max-w-sm rounded-2xl bg-white p-5 shadow-xl dark:bg-zinc-900"
                    on:click=|ev| ev.stop_propagation()
                >
                    <div class="flex items-center gap-2">
                        <h2 id="share-title" class="text-base font-semibold">"Open on your phone"</h2>
                        <button
                            type="button"
                            aria-label="Close"
                            on:click=move |_| open.set(false)
                            class="ml-auto inline-flex h-11 w-11 items-center justify-center rounded-lg text-zinc-500 hover:bg-zinc-100 focus-visible:outline-none focus-visible:ring-2 focus-visible:ring-indigo-500 dark:hover:bg-zinc-800"
                        >
                            "✕"
                        </button>
                    </div>
                    <p class="mt-1 text-sm text-zinc-500 dark:text-zinc-400">"Scan it with the phone's camera to open this project there."</p>
                    {move || match link.value().get() {
                        None => view! { <div class="mx-auto mt-4 h-[200px] w-[200px] animate-pulse rounded-lg bg-zinc-100 dark:bg-zinc-800"></div> }.into_any(),
                        Some(Ok(l)) => view! {
                            <div class="mx-auto mt-4 w-[220px] rounded-lg bg-white p-2 [&>svg]:h-auto [&>svg]:w-full" data-testid="qr" inner_html=l.svg></div>
                            <p class="mt-3 text-center font-mono text-xs wrap-anywhere text-zinc-600 select-all dark:text-zinc-300">{l.url}</p>
                        }.into_any(),
                        Some(Err(e)) => view! { <div class="mt-4"><ErrorNote message=e.message().to_owned() /></div> }.into_any(),
                    }}
                </div>
            </div>
        })}
        </leptos::portal::Portal>
    }
}
