//! Types shared by every layer of CodeFlux, from the database to the browser.
//!
//! This crate compiles for the server and for `wasm32`, so it depends on serde-level crates
//! only: no Leptos, no axum, no database driver. What crosses the wire (server function
//! arguments and results, run events) is defined here once.

mod account;
mod error;
mod event;
mod model;
pub mod time;
pub mod validate;

pub use account::{Account, ApiToken, Invite, NewApiToken};
pub use error::{AppError, ErrorKind};
pub use event::{Run, RunEvent, RunStatus, StoredEvent};
pub use model::{Fragment, Message, MessageKind, Project, ProjectView, Role, Template};
pub use uuid::Uuid;

/// Largest prompt or follow-up message we accept, in characters.
pub const MAX_PROMPT_CHARS: usize = 50_000;
