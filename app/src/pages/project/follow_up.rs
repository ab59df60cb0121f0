//! The follow-up box under the conversation, with the model picker, and the errors the
//! preview reported while the person used it (offered to fix).

use leptos::prelude::*;

use super::message::FixIt;
use super::state::expect_ws;
use crate::components::{ErrorNote, Icon, PromptBox, Svg};
use crate::model_picker::ModelPicker;

#[component]
pub(super) fn FollowUp() -> impl IntoView {
    let ws = expect_ws();
    let send = ws.send;
    let draft = RwSignal::new(String::new());
    let project_id = ws.project_id.to_string();
    // The draft is cleared once the prompt box's message was taken.
    Effect::new(move |_| {
        if let Some(Ok(m)) = send.value().get()
            && m.content.trim() == draft.get_untracked().trim()
        {
            draft.set(String::new());
        }
    });
    let submit = Callback::new(move |()| ws.send_message(draft.get_untracked()));
    let pending = move || {
        send.input().get().map(|input| {
            view! {
                <div class="flex justify-end px-3 pb-2 sm:px-4">
                    <p class="max-w-[88%] rounded-2xl rounded-br-md bg-zinc-200/60 px-3.5 py-2 text-sm whitespace-pre-wrap wrap-anywhere opacity-70 dark:bg-zinc-800/60">{input.content}</p>
                </div>
            }
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
            <PreviewErrors />
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
                    <ModelPicker model=ws.model />
                </PromptBox>
            </div>
        </div>
    }
}

/// Runtime errors the preview page reported (by postMessage, checked by origin and frame).
#[component]
fn PreviewErrors() -> impl IntoView {
    let ws = expect_ws();
    move || {
        let errors = ws.preview_errors.get();
        let last = errors.last()?.clone();
        let count = errors.len();
        let request = format!(
            "The app shows {} while I use the preview:\n{}\n\nFind the cause and fix it.",
            if count == 1 {
                "an error".to_owned()
            } else {
                format!("{count} errors")
            },
            errors
                .iter()
                .map(|e| format!("- {e}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        Some(view! {
            <div role="alert" class="mx-3 mb-2 rounded-xl border border-amber-300 bg-amber-50 px-3 py-2 text-xs text-amber-900 sm:mx-4 dark:border-amber-800/70 dark:bg-amber-950/40 dark:text-amber-100" data-preview-errors=count.to_string()>
                <p class="flex items-center gap-1.5 font-medium">
                    <Svg icon=Icon::Alert class="h-3.5 w-3.5" />
                    {if count == 1 { "The preview reported an error".to_owned() } else { format!("The preview reported {count} errors") }}
                </p>
                <p class="mt-1 line-clamp-3 font-mono text-[11px] wrap-anywhere">{last}</p>
                <div class="mt-2 flex gap-2">
                    <FixIt request />
                    <button
                        type="button"
                        on:click=move |_| ws.preview_errors.set(Vec::new())
                        class="inline-flex h-11 items-center rounded-lg px-3 text-xs font-medium sm:h-8 sm:px-2.5 hover:bg-amber-100 focus-visible:outline-none focus-visible:ring-2 focus-visible:ring-amber-500 dark:hover:bg-amber-900/40"
                    >
                        "Dismiss"
                    </button>
                </div>
            </div>
        })
    }
}
