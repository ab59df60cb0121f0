//! The E2B backend (issue 14, point 5; in progress): sandboxes on E2B instead of this machine,
//! through E2B's REST API (`api`) and the envd agent inside each sandbox (`envd`: files over
//! HTTP, processes over Connect RPC, framed by `connect`). Protocol notes:
//! `docs/notes/e2b-protocol.md`.
//!
//! Still to build: the `Sandbox` and `SandboxProvider` implementations (one E2B sandbox per live
//! project, sources written from the server's records, the template's start command as the dev
//! server, previews through our proxy to `<port>-<id>.<domain>` over TLS with the Host
//! rewritten), `CODEFLUX_SANDBOX=e2b` in the server, and a loopback double in test-support.

pub mod api;
pub mod connect;
pub mod envd;

/// The HTTP client for E2B (rustls with the ring provider, as the model client uses).
pub fn http_client() -> Result<reqwest::Client, String> {
    // Installed once per process; a second install is refused, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|e| format!("the HTTP client could not be made: {e}"))
}
