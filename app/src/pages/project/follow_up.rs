//! The follow-up box under the conversation.

use leptos::prelude::*;

use super::state::expect_ws;
use crate::api::CreateMessage;
use crate::components::{ErrorNote, PromptBox};

#[component]
pub(super) fn FollowUp() -> impl IntoView {
    let ws = expect_ws();
    let send = ServerAction::<CreateMessage>::new();
    let draft = RwSignal::new(String::new());
    let project_id = ws.project_id.to_string();
    Effect::new(move |_| {
        if let Some(Ok(m)) = send.value().get() {
            draft.set(String::new());
            ws.messages.update(|list| {
                if !list.iter().any(|x| x.id == m.id) {
                    list.push(m);
                }
            });
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
    let pending = move || {
        send.input()
            .get()
            .map(|input| view! {
                <div class="flex justify-end px-3 pb-2 sm:px-4">
                    <p class="max-w-[88%] rounded-2xl rounded-br-md bg-zinc-200/60 px-3.5 py-2 text-sm whitespace-pre-wrap wrap-anywhere opacity-70 dark:bg-zinc-800/60">{input.content}</p>
                </div>
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
                </PromptBox>
            </div>
        </div>
    }
}
