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
                data-preview="true"
                on:load=move |_| say_hello()
                class="absolute inset-0 h-full w-full border-0"
                allow="clipboard-read; clipboard-write"
            ></iframe>
        </div>
    }
}

/// Errors kept from the preview, at most.
#[cfg(feature = "hydrate")]
const MAX_PREVIEW_ERRORS: usize = 10;

/// The preview frame of the page, if it is there.
#[cfg(feature = "hydrate")]
fn preview_frame() -> Option<web_sys::HtmlIFrameElement> {
    use wasm_bindgen::JsCast;
    document()
        .query_selector("iframe[data-preview]")
        .ok()
        .flatten()?
        .dyn_into()
        .ok()
}

/// Tells the page in the preview frame that we listen (its error reporter then posts to our
/// origin, and only to it).
fn say_hello() {
    #[cfg(feature = "hydrate")]
    if let Some(win) = preview_frame().and_then(|f| f.content_window()) {
        let hello = js_sys::Object::new();
        if js_sys::Reflect::set(&hello, &"codeflux".into(), &"hello".into()).is_ok()
            && let Err(e) = win.post_message(&hello, "*")
        {
            leptos::logging::warn!("greeting the preview: {e:?}");
        }
    }
}

/// Listens for the errors the preview page reports: only messages from our own preview frame
/// (the same window object) and from another http(s) origin than the app's count, and only
/// their text is kept (shown as text, sent only when the person presses "Fix it").
#[cfg(feature = "hydrate")]
pub fn listen_for_preview_errors(ws: crate::pages::project::Ws) {
    use wasm_bindgen::JsCast;
    use wasm_bindgen::prelude::Closure;

    let own_origin = window().location().origin().unwrap_or_default();
    let handler =
        Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |ev: web_sys::MessageEvent| {
            let Some(frame) = preview_frame().and_then(|f| f.content_window()) else {
                return;
            };
            let from_frame = ev
                .source()
                .is_some_and(|s| js_sys::Object::is(&s, frame.as_ref()));
            let origin = ev.origin();
            if !from_frame
                || origin == own_origin
                || !(origin.starts_with("http://") || origin.starts_with("https://"))
            {
                return;
            }
            let data = ev.data();
            let field = |k: &str| {
                js_sys::Reflect::get(&data, &k.into())
                    .ok()
                    .and_then(|v| v.as_string())
                    .unwrap_or_default()
            };
            if field("codeflux") != "preview-error" {
                return;
            }
            let line = js_sys::Reflect::get(&data, &"line".into())
                .ok()
                .and_then(|v| v.as_f64())
                .filter(|l| *l > 0.0);
            let source = field("source");
            let place = match (source.rsplit('/').next().filter(|s| !s.is_empty()), line) {
                (Some(file), Some(l)) => format!(" ({file}:{l})"),
                (Some(file), None) => format!(" ({file})"),
                _ => String::new(),
            };
            let text: String = format!("{}: {}{place}", field("kind"), field("message"))
                .chars()
                .take(600)
                .collect();
            ws.preview_errors.update(|list| {
                if list.last() != Some(&text) {
                    list.push(text);
                    if list.len() > MAX_PREVIEW_ERRORS {
                        list.remove(0);
                    }
                }
            });
        });
    if let Err(e) =
        window().add_event_listener_with_callback("message", handler.as_ref().unchecked_ref())
    {
        leptos::logging::warn!("listening to the preview: {e:?}");
        return;
    }
    let handler = send_wrapper::SendWrapper::new(handler);
    on_cleanup(move || {
        let _ = window()
            .remove_event_listener_with_callback("message", handler.as_ref().unchecked_ref());
    });
}
