//! SeaORM entities, one module per table (schema in the `migration` crate).

pub mod fragment;
pub mod message;
pub mod project;
pub mod run;
pub mod run_event;
