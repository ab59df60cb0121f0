//! The workspace's shared state, provided as context to every pane.

use codeflux_protocol::{Fragment, Message, WorkLog};
use leptos::prelude::*;
use uuid::Uuid;

use crate::api::{CreateMessage, ShowVersion};
use crate::live::Live;

/// Which pane a phone shows (and, for Preview/Code, which the desktop's right pane shows).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Pane {
    Chat,
    Preview,
    Code,
}

/// The workspace's shared state.
#[derive(Clone, Copy)]
pub struct Ws {
    pub project_id: Uuid,
    pub messages: RwSignal<Vec<Message>>,
    pub live: Live,
    /// The fragment shown in the preview and code panes; None = the latest.
    pub selected: RwSignal<Option<Uuid>>,
    pub pane: RwSignal<Pane>,
    pub preview_nonce: RwSignal<u32>,
    pub preview_url: StoredValue<String>,
    /// A new version arrived while the preview was not in view (phone tab dot).
    pub unseen_version: RwSignal<bool>,
    /// Switches the live preview to a chosen version.
    pub show: ServerAction<ShowVersion>,
    /// The file the code pane shows (None: the version's main file).
    pub code_file: RwSignal<Option<String>>,
    /// The steps of the project's finished runs, loaded after the page starts.
    pub logs: RwSignal<Vec<WorkLog>>,
    /// The model chosen for the next message ("": the server's default).
    pub model: RwSignal<String>,
    /// Errors the preview page reported while the person used it (newest last, bounded).
    pub preview_errors: RwSignal<Vec<String>>,
    /// Sends a follow-up (the prompt box, Retry and Fix it).
    pub send: ServerAction<CreateMessage>,
}

impl Ws {
    /// Every version, oldest first.
    pub fn fragments(&self) -> Vec<Fragment> {
        self.messages
            .with(|m| m.iter().filter_map(|m| m.fragment.clone()).collect())
    }

    pub fn latest(&self) -> Option<Fragment> {
        self.messages
            .with(|m| m.iter().rev().find_map(|m| m.fragment.clone()))
    }

    /// The stored steps of a run.
    pub fn log(&self, run_id: Uuid) -> Option<WorkLog> {
        self.logs
            .with(|l| l.iter().find(|l| l.run_id == run_id).cloned())
    }

    /// Sends a follow-up with the chosen model.
    pub fn send_message(&self, content: String) {
        self.send.dispatch(CreateMessage {
            project_id: self.project_id.to_string(),
            content,
            model: self.model.get_untracked(),
        });
    }

    /// Opens a file of the shown version in the code pane.
    pub fn open_file(&self, path: String) {
        self.code_file.set(Some(path));
        self.pane.set(Pane::Code);
    }

    /// The version the panes show.
    pub fn current(&self) -> Option<Fragment> {
        match self.selected.get() {
            Some(id) => self
                .fragments()
                .into_iter()
                .find(|f| f.id == id)
                .or_else(|| self.latest()),
            None => self.latest(),
        }
    }
}

pub(crate) fn expect_ws() -> Ws {
    use_context::<Ws>().unwrap_or_else(|| Ws {
        project_id: Uuid::nil(),
        messages: RwSignal::new(Vec::new()),
        live: Live::new(),
        selected: RwSignal::new(None),
        pane: RwSignal::new(Pane::Chat),
        preview_nonce: RwSignal::new(0),
        preview_url: StoredValue::new(String::new()),
        unseen_version: RwSignal::new(false),
        show: ServerAction::new(),
        code_file: RwSignal::new(None),
        logs: RwSignal::new(Vec::new()),
        model: RwSignal::new(String::new()),
        preview_errors: RwSignal::new(Vec::new()),
        send: ServerAction::new(),
    })
}

pub fn use_ws() -> Ws {
    expect_ws()
}
