//! The E2B backend (issue 14, point 5): every project's sandbox on E2B instead of this
//! machine, through E2B's REST API (`api`) and the envd agent inside each sandbox (`envd`:
//! files over HTTP, processes over Connect RPC, framed by `connect`). Protocol notes:
//! `docs/notes/e2b-protocol.md`.
//!
//! - [`E2bProvider`] (`provider`): one E2B sandbox per live project, created from the
//!   project's template (`sandbox-templates/<name>/e2b.toml`), its sources written from the
//!   server's records, killed when unused for `idle`; E2B's own time-to-live is kept a little
//!   longer than that, so a node that dies leaves nothing running for long.
//! - `live`: one live sandbox, its dev server watched (probed through E2B's edge, started
//!   again with the template's start command when it is down).
//! - `sandbox`: the agent's [`crate::Sandbox`] on it (files, commands, snapshots).
//! - `conn`: where a sandbox's ports are reached (`<port>-<id>.<domain>` over TLS, or one
//!   fixed address routed by E2B's headers) and the preview connection.
//!
//! Nothing of the server's environment is sent to E2B: a sandbox gets no environment
//! variables from us, and the API key stays in the server.

pub mod api;
mod body;
mod conn;
pub mod connect;
pub mod envd;
mod live;
mod provider;
mod sandbox;

use std::time::Duration;

use codeflux_protocol::Template;

pub use provider::E2bProvider;

/// How a template is run on E2B.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct E2bTemplate {
    /// The E2B template's name or id (`template_name` in its e2b.toml).
    pub name: String,
    /// The dev server's port inside the sandbox.
    pub port: u16,
    /// Starts the dev server again when it is down (the template's `start_cmd`).
    pub start_cmd: String,
}

/// The E2B backend's settings (read once, from the environment, by the server).
#[derive(Clone)]
pub struct E2bConfig {
    /// `https://api.<domain>` (E2B_API_URL).
    pub api_url: String,
    /// E2B_API_KEY; never logged, never sent anywhere but E2B's API.
    pub api_key: String,
    /// Where sandboxes' ports live (E2B_DOMAIN, default e2b.app).
    pub domain: String,
    /// One address for every sandbox request (envd and ports), routed by the `E2b-Sandbox-Id`
    /// and `E2b-Sandbox-Port` headers (E2B_SANDBOX_URL; a loopback double in tests). None:
    /// `https://<port>-<id>.<domain>`.
    pub sandbox_url: Option<String>,
    pub nextjs: E2bTemplate,
    pub vite_react: E2bTemplate,
    /// The preview address with `{id}` for the project id.
    pub preview_url: String,
    /// A sandbox nobody used for this long is killed.
    pub idle: Duration,
    /// Live sandboxes at most (E2B's plan limits concurrent sandboxes).
    pub max_sandboxes: usize,
}

impl std::fmt::Debug for E2bConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("E2bConfig")
            .field("api_url", &self.api_url)
            .field("api_key", &"<redacted>")
            .field("domain", &self.domain)
            .field("sandbox_url", &self.sandbox_url)
            .field("nextjs", &self.nextjs)
            .field("vite_react", &self.vite_react)
            .field("preview_url", &self.preview_url)
            .field("idle", &self.idle)
            .field("max_sandboxes", &self.max_sandboxes)
            .finish()
    }
}

impl E2bConfig {
    /// The defaults of `sandbox-templates/*/e2b.toml`.
    pub fn new(api_key: &str, domain: &str, preview_url: &str) -> Self {
        Self {
            api_url: format!("https://api.{domain}"),
            api_key: api_key.to_owned(),
            domain: domain.to_owned(),
            sandbox_url: None,
            nextjs: E2bTemplate {
                name: "codeflux-nextjs".into(),
                port: 3000,
                start_cmd: "/compile_page.sh".into(),
            },
            vite_react: E2bTemplate {
                name: "codeflux-vite-react".into(),
                port: 5173,
                start_cmd: "/start_vite.sh".into(),
            },
            preview_url: preview_url.to_owned(),
            idle: Duration::from_secs(15 * 60),
            max_sandboxes: 20,
        }
    }

    pub fn template(&self, t: Template) -> &E2bTemplate {
        match t {
            Template::NextJs => &self.nextjs,
            Template::ViteReact => &self.vite_react,
        }
    }
}

/// The HTTP client for E2B (rustls with the ring provider, as the model client uses).
pub fn http_client() -> Result<reqwest::Client, String> {
    // Installed once per process; a second install is refused, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|e| format!("the HTTP client could not be made: {e}"))
}
