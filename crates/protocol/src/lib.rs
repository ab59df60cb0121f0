//! Types shared by every layer of CodeFlux, from the database to the browser.
//!
//! This crate compiles for the server and for `wasm32`, so it depends on serde-level crates
//! only: no Leptos, no axum, no database driver. What crosses the wire (server function
//! arguments and results, run events) is defined here once.

mod account;
mod check;
mod error;
mod event;
mod llm_model;
mod model;
pub mod time;
pub mod validate;
mod worklog;

pub use account::{Account, ApiToken, Invite, NewApiToken};
pub use check::{CheckItem, CheckReport, CheckStatus, Problem};
pub use error::{AppError, ErrorKind};
pub use event::{Run, RunEvent, RunStatus, StoredEvent};
pub use llm_model::{ModelInfo, ModelList, TokenUsage};
pub use model::{Fragment, Message, MessageKind, Project, ProjectView, Role, Template};
pub use uuid::Uuid;
pub use worklog::{WorkLog, WorkStep};

/// Largest prompt or follow-up message we accept, in characters.
pub const MAX_PROMPT_CHARS: usize = 50_000;
