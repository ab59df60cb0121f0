pub mod auth;
pub mod code;
pub mod home;
pub mod not_found;
pub mod preview;
pub mod project;
pub mod settings;
