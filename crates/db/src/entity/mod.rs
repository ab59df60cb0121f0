//! SeaORM entities, one module per table (schema in the `migration` crate).

pub mod api_token;
pub mod fragment;
pub mod invite;
pub mod message;
pub mod project;
pub mod run;
pub mod run_event;
pub mod session;
pub mod user;
