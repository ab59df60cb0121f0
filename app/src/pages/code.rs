//! The code pane: the selected version's file tree and a highlighted viewer, copy a file,
//! download the whole version as a zip.

use std::collections::BTreeMap;

use codeflux_protocol::Fragment;
use leptos::prelude::*;

use crate::api::get_fragment_file;
use crate::components::{Icon, Svg};
use crate::pages::project::use_ws;

/// The file shown first: the app's entry component if there is one.
fn default_file(files: &BTreeMap<String, String>) -> Option<String> {
    [
        "src/App.tsx",
        "src/app/page.tsx",
        "app/page.tsx",
        "src/main.tsx",
        "index.html",
        "package.json",
    ]
    .iter()
    .find(|p| files.contains_key(**p))
    .map(|p| (*p).to_owned())
    .or_else(|| files.keys().next().cloned())
}

#[component]
pub fn CodePane() -> impl IntoView {
    let ws = use_ws();
    let fragment = Memo::new(move |_| ws.current());
    let chosen = ws.code_file;
    // The file shown: the chosen one if this version has it, else the default.
    let file = Memo::new(move |_| {
        let f = fragment.get()?;
        match chosen.get() {
            Some(p) if f.files.contains_key(&p) => Some(p),
            _ => default_file(&f.files),
        }
    });
    view! {
        {move || match fragment.get() {
            None => view! {
                <div class="flex flex-1 items-center justify-center p-8 text-center text-sm text-zinc-500">
                    "The code appears here once the first version is ready."
                </div>
            }.into_any(),
            Some(f) => view! { <CodeView fragment=f file chosen /> }.into_any(),
        }}
    }
}

#[component]
fn CodeView(
    fragment: Fragment,
    file: Memo<Option<String>>,
    chosen: RwSignal<Option<String>>,
) -> impl IntoView {
    let fid = fragment.id;
    let files = StoredValue::new(fragment.files.clone());
    let paths: Vec<String> = fragment.files.keys().cloned().collect();
    let zip = format!("/api/fragments/{fid}/zip");
    let copied = RwSignal::new(false);
    let copy = move |_| {
        let Some(path) = file.get_untracked() else {
            return;
        };
        let text = files
            .with_value(|f| f.get(&path).cloned())
            .unwrap_or_default();
        #[cfg(feature = "hydrate")]
        {
            let clipboard = window().navigator().clipboard();
            let _ = clipboard.write_text(&text);
            copied.set(true);
            set_timeout(
                move || copied.set(false),
                std::time::Duration::from_millis(1500),
            );
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = text;
    };
    let highlighted = Resource::new(
        move || file.get(),
        move |path| async move {
            match path {
                Some(p) => get_fragment_file(fid.to_string(), p).await.ok(),
                None => None,
            }
        },
    );
    let raw_lines = move || {
        file.get()
            .and_then(|p| files.with_value(|f| f.get(&p).cloned()))
            .unwrap_or_default()
            .lines()
            .map(|l| l.to_owned())
            .collect::<Vec<_>>()
    };
    view! {
        <div class="flex min-h-0 flex-1 flex-col sm:flex-row">
            <nav aria-label="Files" class="max-h-44 shrink-0 overflow-auto border-b border-zinc-200 py-2 text-sm sm:max-h-none sm:w-60 sm:border-r sm:border-b-0 dark:border-zinc-800">
                <FileTree paths file chosen />
            </nav>
            <div class="flex min-h-0 min-w-0 flex-1 flex-col">
                <div class="flex h-10 shrink-0 items-center gap-1 border-b border-zinc-200 px-2 dark:border-zinc-800">
                    <span class="min-w-0 flex-1 truncate font-mono text-xs text-zinc-600 dark:text-zinc-400">{move || file.get().unwrap_or_default()}</span>
                    <button
                        type="button"
                        on:click=copy
                        aria-label="Copy this file"
                        class="inline-flex h-11 min-w-11 items-center justify-center gap-1 rounded-lg px-2 text-xs text-zinc-600 sm:h-8 sm:min-w-0 hover:bg-zinc-200/70 focus-visible:outline-none focus-visible:ring-2 focus-visible:ring-indigo-500 dark:text-zinc-300 dark:hover:bg-zinc-800"
                    >
                        <Svg icon=Icon::Copy class="h-3.5 w-3.5" />
                        {move || if copied.get() { "Copied" } else { "Copy" }}
                    </button>
                    <a
                        href=zip
                        download=""
                        class="inline-flex h-11 min-w-11 items-center justify-center gap-1 rounded-lg px-2 text-xs text-zinc-600 sm:h-8 sm:min-w-0 hover:bg-zinc-200/70 focus-visible:outline-none focus-visible:ring-2 focus-visible:ring-indigo-500 dark:text-zinc-300 dark:hover:bg-zinc-800"
                    >
                        <Svg icon=Icon::Download class="h-3.5 w-3.5" />
                        "Download zip"
                    </a>
                </div>
                <div class="min-h-0 flex-1 overflow-auto bg-white dark:bg-zinc-950">
                    <pre class="hl min-w-max py-2 font-mono text-[12.5px] leading-5"><code>
                        <Transition fallback=move || view! { <Lines lines=raw_lines() html=false /> }>
                            {move || Suspend::new(async move {
                                match highlighted.await {
                                    Some(h) => view! { <Lines lines=h.lines html=true /> }.into_any(),
                                    None => view! { <Lines lines=raw_lines() html=false /> }.into_any(),
                                }
                            })}
                        </Transition>
                    </code></pre>
                </div>
            </div>
        </div>
    }
}

#[component]
fn Lines(lines: Vec<String>, html: bool) -> impl IntoView {
    lines
        .into_iter()
        .enumerate()
        .map(|(i, l)| {
            let content = if html {
                view! { <span class="pr-4" inner_html=l></span> }.into_any()
            } else {
                view! { <span class="pr-4">{l}</span> }.into_any()
            };
            view! {
                <div class="flex">
                    <span class="inline-block w-11 shrink-0 pr-3 text-right text-zinc-400 select-none dark:text-zinc-600">{i + 1}</span>
                    {content}
                </div>
            }
        })
        .collect_view()
}

/// Directories as collapsible groups, files as buttons, sorted like the paths.
#[component]
fn FileTree(
    paths: Vec<String>,
    file: Memo<Option<String>>,
    chosen: RwSignal<Option<String>>,
) -> impl IntoView {
    let mut rows = Vec::new();
    let mut open_dirs: Vec<String> = Vec::new();
    for path in &paths {
        let parts: Vec<&str> = path.split('/').collect();
        let dirs = &parts[..parts.len() - 1];
        // Close directories we left, open the new ones.
        let common = open_dirs
            .iter()
            .zip(dirs.iter())
            .take_while(|(a, b)| a == b)
            .count();
        open_dirs.truncate(common);
        for d in &dirs[common..] {
            rows.push((open_dirs.len(), (*d).to_owned(), None));
            open_dirs.push((*d).to_owned());
        }
        rows.push((
            open_dirs.len(),
            parts[parts.len() - 1].to_owned(),
            Some(path.clone()),
        ));
    }
    rows.into_iter()
        .map(|(depth, name, path)| {
            let pad = format!("padding-left: {}rem", 0.75 + depth as f32 * 0.85);
            match path {
                None => view! {
                    <div class="flex items-center gap-1.5 py-1 pr-2 text-xs font-medium text-zinc-500 dark:text-zinc-400" style=pad>
                        <Svg icon=Icon::Folder class="h-3.5 w-3.5 shrink-0" />
                        <span class="truncate">{name}</span>
                    </div>
                }
                .into_any(),
                Some(p) => {
                    let p2 = p.clone();
                    let active = move || file.get().as_deref() == Some(p2.as_str());
                    view! {
                        <button
                            type="button"
                            aria-current=move || active().then_some("true")
                            on:click=move |_| chosen.set(Some(p.clone()))
                            class="flex w-full items-center gap-1.5 py-1 pr-2 text-left text-xs text-zinc-700 hover:bg-zinc-100 focus-visible:outline-none focus-visible:ring-2 focus-visible:ring-inset focus-visible:ring-indigo-500 aria-[current=true]:bg-indigo-50 aria-[current=true]:text-indigo-700 dark:text-zinc-300 dark:hover:bg-zinc-900 dark:aria-[current=true]:bg-indigo-950 dark:aria-[current=true]:text-indigo-300"
                            style=pad
                        >
                            <Svg icon=Icon::File class="h-3.5 w-3.5 shrink-0 opacity-60" />
                            <span class="truncate">{name}</span>
                        </button>
                    }
                    .into_any()
                }
            }
        })
        .collect_view()
}
