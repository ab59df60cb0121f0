//! The server from outside: the real `codeflux` binary over real HTTP, on SQLite and on the
//! local PostgreSQL, and the real page in headless Chromium.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api;
mod auth;
mod browser;
mod cluster;
mod devices;
mod e2b;
mod hardening;
mod runs;
mod sandbox;
mod support;
mod work;
