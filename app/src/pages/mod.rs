pub mod code;
pub mod home;
pub mod not_found;
pub mod preview;
pub mod project;
