//! Configuration: read once at start from the command line, the environment and `.env`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "codeflux",
    version,
    about = "CodeFlux: describe an app, watch an agent build it in a sandbox, preview it live.",
    long_about = "CodeFlux serves its web app, its /api server functions and /healthz.\n\
                  Settings come from flags or the environment (a .env file in the working directory is read first)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: Config,
}

#[derive(Subcommand, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Serve the app (the default).
    Serve,
    /// Apply migrations, then fill the database with a few sample projects.
    Seed,
    /// Install the project templates' packages into the template cache (once per machine).
    PrepareTemplates,
}

#[derive(Parser, Debug, Clone)]
pub struct Config {
    /// Address to listen on, host:port. Default: site-addr in Leptos.toml (127.0.0.1:3000).
    #[arg(long = "addr", env = "LEPTOS_SITE_ADDR")]
    pub addr: Option<SocketAddr>,

    /// Database URL: sqlite://path or postgres://user@host/db. Default: a SQLite file in the data dir.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Directory for CodeFlux's own data (the default SQLite database, workspaces).
    #[arg(long, env = "CODEFLUX_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// The Leptos settings file (site root, pkg dir, output name).
    #[arg(long, env = "CODEFLUX_LEPTOS_TOML", default_value = "Leptos.toml")]
    pub leptos_toml: PathBuf,

    /// Where the project templates (vite-react, nextjs) are.
    #[arg(
        long,
        env = "CODEFLUX_TEMPLATES_DIR",
        default_value = "sandbox-templates"
    )]
    pub templates_dir: PathBuf,

    /// Any OpenAI-compatible server (e.g. http://127.0.0.1:11434/v1); overrides the provider's address.
    #[arg(long, env = "LLM_BASE_URL")]
    pub llm_base_url: Option<String>,

    /// API key for LLM_BASE_URL (or to override a provider's key).
    #[arg(long, env = "LLM_API_KEY", hide_env_values = true)]
    pub llm_api_key: Option<String>,

    /// Model name; overrides the provider's default (openai/gpt-oss-120b:free on OpenRouter).
    #[arg(long, env = "LLM_MODEL")]
    pub llm_model: Option<String>,

    /// A built-in provider by name: openrouter, openai or ollama.
    #[arg(long, env = "LLM_PROVIDER")]
    pub llm_provider: Option<String>,

    /// OpenRouter key; OpenRouter is the default provider when it is set.
    #[arg(long, env = "OPENROUTER_API_KEY", hide_env_values = true)]
    pub openrouter_api_key: Option<String>,

    /// OpenAI key.
    #[arg(long, env = "OPENAI_API_KEY", hide_env_values = true)]
    pub openai_api_key: Option<String>,

    /// Agent runs working at the same time on this node, across every project.
    #[arg(long, env = "CODEFLUX_MAX_RUNS", default_value_t = 4)]
    pub max_runs: usize,

    /// How other CodeFlux nodes on the same database reach this one (http://host:port), for
    /// preview requests that land on a node without the project's sandbox. Default: the
    /// listening address when it is a specific one.
    #[arg(long, env = "CODEFLUX_NODE_URL")]
    pub node_url: Option<String>,

    /// Seconds a node holds a run without renewing its lease; after that another node resumes
    /// it. Renewed every third of it.
    #[arg(long, env = "CODEFLUX_LEASE_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(2..=3600))]
    pub lease_secs: u64,

    /// Model calls with tools per run, at most.
    #[arg(long, env = "CODEFLUX_MAX_STEPS", default_value_t = 30)]
    pub max_steps: usize,

    /// Times the agent is sent back to fix what the automatic check of the app found (type
    /// check, dev server, page load) before the run ends with a warning. 0: check, never fix.
    #[arg(long, env = "CODEFLUX_FIX_ROUNDS", default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=10))]
    pub fix_rounds: u32,

    /// Log lines as text (for people) or JSON (one object per line, for log collectors).
    #[arg(long, env = "CODEFLUX_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,

    /// Prices for providers that report no cost: `model=PROMPT/COMPLETION,...` in US dollars
    /// per million tokens (e.g. `gpt-4.1-mini=0.4/1.6`). OpenRouter reports its own costs.
    #[arg(long, env = "CODEFLUX_MODEL_PRICES", default_value = "", value_parser = parse_prices)]
    pub model_prices: Prices,

    /// Seconds one terminal command of the agent may take.
    #[arg(long, env = "CODEFLUX_COMMAND_TIMEOUT", default_value_t = 300)]
    pub command_timeout_secs: u64,

    /// Where prepared templates (with node_modules) are cached, shared by every data dir.
    /// Default: ~/.cache/codeflux/templates.
    #[arg(long, env = "CODEFLUX_TEMPLATE_CACHE")]
    pub template_cache: Option<PathBuf>,

    /// Memory of one project's sandbox (its dev server and commands together), in MiB.
    #[arg(long, env = "CODEFLUX_SANDBOX_MEMORY_MB", default_value_t = 2048)]
    pub sandbox_memory_mb: u64,

    /// Size of one project's disk (its workspace, installed packages, npm cache and /tmp
    /// together), in MiB. Writing past it fails inside the sandbox with "No space left on device".
    #[arg(long, env = "CODEFLUX_SANDBOX_DISK_MB", default_value_t = 4096, value_parser = clap::value_parser!(u64).range(64..=1_048_576))]
    pub sandbox_disk_mb: u64,

    /// CPU time one project's processes may use, in CPUs (0.5 = half a core).
    #[arg(long, env = "CODEFLUX_SANDBOX_CPUS", default_value_t = 1.0, value_parser = parse_cpus)]
    pub sandbox_cpus: f64,

    /// Live sandboxes at most (default: the machine's memory less 2 GiB, divided by
    /// CODEFLUX_SANDBOX_MEMORY_MB). Past it the least recently used idle one is stopped; if none
    /// is idle, a preview answers 503 (busy) with Retry-After.
    #[arg(long, env = "CODEFLUX_MAX_SANDBOXES", value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub max_sandboxes: Option<u64>,

    /// Seconds without preview traffic or runs after which a project's dev server stops.
    #[arg(long, env = "CODEFLUX_PREVIEW_IDLE_SECS", default_value_t = 900, value_parser = clap::value_parser!(u64).range(5..))]
    pub preview_idle_secs: u64,

    /// Accounts: `on` (sign-in needed; the first account is the admin) or `off` (one person,
    /// allowed only while the server listens on a loopback address).
    #[arg(long, env = "CODEFLUX_AUTH", default_value = "on", value_parser = ["on", "off"])]
    pub auth: String,

    /// Who may sign up once the first account (the admin) exists: `invite` (an admin's
    /// single-use link), `open` or `closed`.
    #[arg(long, env = "CODEFLUX_SIGNUP", default_value = "invite", value_parser = ["invite", "open", "closed"])]
    pub signup: String,

    /// The address browsers use for the app, like https://codeflux.example.com (default:
    /// http://<LEPTOS_SITE_ADDR>). Its host is the only name the app answers for besides
    /// localhost and IP addresses; https makes the session cookie Secure.
    #[arg(long, env = "CODEFLUX_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// A wildcard domain for previews behind a TLS reverse proxy: previews are served at
    /// <scheme>://<project-id>.<domain>/ (like preview.example.com; the proxy sends
    /// *.preview.example.com to the app).
    #[arg(long, env = "CODEFLUX_PREVIEW_DOMAIN")]
    pub preview_domain: Option<String>,

    /// Ports for previews when the app is reached by an address that is neither localhost nor
    /// under CODEFLUX_PREVIEW_DOMAIN (one port per previewed project, on the app's address).
    #[arg(long, env = "CODEFLUX_PREVIEW_PORTS", default_value = "41000-41999")]
    pub preview_ports: String,

    /// Reverse proxies whose X-Forwarded-For is believed (comma-separated addresses or CIDR
    /// ranges, like 127.0.0.1,10.0.0.0/8). Others' forwarded headers are ignored.
    #[arg(long, env = "CODEFLUX_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<String>,

    /// More hosts sandboxes may reach on port 443 (comma-separated), besides the npm registry.
    #[arg(long, env = "CODEFLUX_EGRESS_HOSTS", value_delimiter = ',')]
    pub egress_hosts: Vec<String>,

    /// Where projects' sandboxes run: `local` (this machine: bubblewrap, one uid per project)
    /// or `e2b` (E2B's cloud, from the templates in sandbox-templates/*/e2b.toml; needs
    /// E2B_API_KEY).
    #[arg(long, env = "CODEFLUX_SANDBOX", default_value = "local", value_parser = ["local", "e2b"])]
    pub sandbox_backend: String,

    /// E2B's API key (with CODEFLUX_SANDBOX=e2b). It stays in the server: no sandbox sees it.
    #[arg(long, env = "E2B_API_KEY", hide_env_values = true)]
    pub e2b_api_key: Option<String>,

    /// E2B's domain: the API is https://api.<domain>, a sandbox's port P is
    /// https://P-<sandbox>.<domain>.
    #[arg(long, env = "E2B_DOMAIN", default_value = "e2b.app")]
    pub e2b_domain: String,

    /// E2B's API address, when not https://api.<E2B_DOMAIN>.
    #[arg(long, env = "E2B_API_URL")]
    pub e2b_api_url: Option<String>,

    /// One address for every request to sandboxes (envd and ports), routed by E2B's
    /// E2b-Sandbox-Id/E2b-Sandbox-Port headers (like https://sandbox.e2b.app), instead of
    /// https://<port>-<sandbox>.<domain>. Plain http only to loopback.
    #[arg(long, env = "E2B_SANDBOX_URL")]
    pub e2b_sandbox_url: Option<String>,
}

/// A CPU share: a positive number of CPUs, at most the machine's.
/// A price table: model -> (USD per million prompt tokens, per million completion tokens).
#[derive(Clone, Debug, Default)]
pub struct Prices(pub std::collections::HashMap<String, (f64, f64)>);

fn parse_prices(s: &str) -> Result<Prices, String> {
    let mut out = std::collections::HashMap::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (model, prices) = item
            .rsplit_once('=')
            .ok_or_else(|| format!("\"{item}\" is not model=PROMPT/COMPLETION"))?;
        let (p, c) = prices
            .split_once('/')
            .ok_or_else(|| format!("\"{item}\": give two prices, PROMPT/COMPLETION"))?;
        let num = |v: &str| -> Result<f64, String> {
            v.trim()
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .ok_or_else(|| format!("\"{item}\": \"{v}\" is not a price in dollars"))
        };
        out.insert(model.trim().to_owned(), (num(p)?, num(c)?));
    }
    Ok(Prices(out))
}

fn parse_cpus(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("\"{s}\" is not a number of CPUs (like 1 or 0.5)"))?;
    let max = std::thread::available_parallelism().map_or(1, usize::from) as f64;
    if !(v.is_finite() && v >= 0.05) {
        return Err(format!("{v} CPUs is too little (at least 0.05)"));
    }
    if v > max {
        return Err(format!("{v} CPUs is more than this machine has ({max})"));
    }
    Ok(v)
}

/// The app's public address, checked.
#[derive(Clone, Debug)]
pub struct PublicUrl {
    /// `scheme://host[:port]`, lowercase, no trailing slash.
    pub origin: String,
    pub host: String,
    pub https: bool,
}

impl PublicUrl {
    pub fn parse(raw: &str) -> anyhow::Result<PublicUrl> {
        let url = url::Url::parse(raw.trim())
            .map_err(|e| anyhow::anyhow!("CODEFLUX_PUBLIC_URL \"{raw}\" is not a URL: {e}"))?;
        let https = match url.scheme() {
            "https" => true,
            "http" => false,
            other => {
                anyhow::bail!("CODEFLUX_PUBLIC_URL must be http:// or https://, not {other}://")
            }
        };
        let Some(host) = url.host_str() else {
            anyhow::bail!("CODEFLUX_PUBLIC_URL \"{raw}\" has no host");
        };
        if !url.username().is_empty() || url.password().is_some() {
            anyhow::bail!("CODEFLUX_PUBLIC_URL must not contain a user name or password");
        }
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            anyhow::bail!(
                "CODEFLUX_PUBLIC_URL must be an origin only (like https://codeflux.example.com), without a path"
            );
        }
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let origin = url.origin().ascii_serialization().to_ascii_lowercase();
        Ok(PublicUrl {
            origin,
            host,
            https,
        })
    }

    /// The default: the address the server listens on (127.0.0.1 when it listens on all).
    pub fn from_addr(addr: SocketAddr) -> PublicUrl {
        let ip = if addr.ip().is_unspecified() {
            std::net::IpAddr::from([127, 0, 0, 1])
        } else {
            addr.ip()
        };
        let shown = SocketAddr::new(ip, addr.port());
        PublicUrl {
            origin: format!("http://{shown}"),
            host: ip.to_string(),
            https: false,
        }
    }
}

impl Config {
    /// Whether accounts are on.
    pub fn auth_enabled(&self) -> bool {
        self.auth != "off"
    }

    /// Refuses settings that cannot run: accounts off on an address others can reach.
    pub fn check_listen(&self, addr: SocketAddr) -> anyhow::Result<()> {
        if !self.auth_enabled() && !addr.ip().is_loopback() {
            anyhow::bail!(
                "CODEFLUX_AUTH=off is only allowed while the server listens on a loopback address \
                 (like 127.0.0.1:3000), because then nobody else can reach it; it would listen on \
                 {addr}, where anyone on the network could drive it. Remove CODEFLUX_AUTH=off \
                 (and create the first account, which becomes the admin), or set \
                 LEPTOS_SITE_ADDR=127.0.0.1:{}.",
                addr.port()
            );
        }
        Ok(())
    }

    /// The local sandbox backend's settings (`port`: where previews are served).
    pub fn sandbox(
        &self,
        port: u16,
    ) -> std::io::Result<codeflux_core::sandbox::local::LocalConfig> {
        let mut c = codeflux_core::sandbox::local::LocalConfig::new(
            std::path::absolute(&self.data_dir)?,
            std::path::absolute(&self.templates_dir)?,
            port,
        )
        .with_host_npm();
        if let Some(cache) = &self.template_cache {
            c.template_cache = std::path::absolute(cache)?;
        }
        c.memory_bytes = self.sandbox_memory_mb.max(256) * 1024 * 1024;
        c.disk_bytes = self.sandbox_disk_mb * 1024 * 1024;
        c.cpus = self.sandbox_cpus;
        c.max_sandboxes = match self.max_sandboxes {
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
            None => codeflux_core::sandbox::local::default_max_sandboxes(c.memory_bytes),
        };
        c.idle_stop = std::time::Duration::from_secs(self.preview_idle_secs);
        c.egress_hosts.extend(
            self.egress_hosts
                .iter()
                .filter(|h| !h.trim().is_empty())
                .cloned(),
        );
        Ok(c)
    }

    /// The E2B backend's settings, when CODEFLUX_SANDBOX=e2b (`preview_url`: the preview
    /// address with `{id}`).
    pub fn e2b(
        &self,
        preview_url: &str,
    ) -> anyhow::Result<Option<codeflux_core::sandbox::e2b::E2bConfig>> {
        if self.sandbox_backend != "e2b" {
            return Ok(None);
        }
        let key = self
            .e2b_api_key
            .as_deref()
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "CODEFLUX_SANDBOX=e2b needs E2B_API_KEY (from https://e2b.dev/dashboard)"
                )
            })?;
        let domain = self.e2b_domain.trim().trim_end_matches('/');
        if domain.is_empty() || domain.contains('/') || domain.contains(':') {
            anyhow::bail!("E2B_DOMAIN is a domain name like e2b.app, not \"{domain}\"");
        }
        let mut c = codeflux_core::sandbox::e2b::E2bConfig::new(key, domain, preview_url);
        if let Some(u) = self.e2b_api_url.as_deref().filter(|u| !u.trim().is_empty()) {
            c.api_url = u.trim().trim_end_matches('/').to_owned();
        }
        c.sandbox_url = self
            .e2b_sandbox_url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(|u| u.trim_end_matches('/').to_owned());
        c.idle = std::time::Duration::from_secs(self.preview_idle_secs);
        if let Some(n) = self.max_sandboxes {
            c.max_sandboxes = usize::try_from(n).unwrap_or(usize::MAX);
        }
        Ok(Some(c))
    }

    /// The use-cases' settings.
    pub fn core(&self) -> codeflux_core::CoreConfig {
        codeflux_core::CoreConfig {
            llm: codeflux_core::LlmSettings {
                base_url: self.llm_base_url.clone(),
                api_key: self.llm_api_key.clone(),
                model: self.llm_model.clone(),
                provider: self.llm_provider.clone(),
                openrouter_api_key: self.openrouter_api_key.clone(),
                openai_api_key: self.openai_api_key.clone(),
            },
            llm_options: codeflux_core::LlmClientOptions::default(),
            model_prices: self.model_prices.0.clone(),
            agent: codeflux_core::AgentConfig {
                max_iterations: self.max_steps.max(1),
                fix_rounds: self.fix_rounds,
                command_timeout: std::time::Duration::from_secs(self.command_timeout_secs.max(1)),
                ..codeflux_core::AgentConfig::default()
            },
            max_concurrent_runs: self.max_runs.max(1),
            auth: codeflux_core::AuthConfig::default(),
            node: codeflux_core::NodeConfig::default(),
        }
    }

    /// This node: a new id, how others reach it, its lease time.
    pub fn node(&self, addr: SocketAddr) -> anyhow::Result<codeflux_core::NodeConfig> {
        let url = match self.node_url.as_deref().map(str::trim) {
            Some(u) if !u.is_empty() => {
                let parsed = url::Url::parse(u)
                    .map_err(|e| anyhow::anyhow!("CODEFLUX_NODE_URL {u:?} is not a URL: {e}"))?;
                if parsed.scheme() != "http" || parsed.host_str().is_none() {
                    anyhow::bail!(
                        "CODEFLUX_NODE_URL must be http://host:port (nodes reach each other on the \
                         internal network), not {u:?}"
                    );
                }
                Some(u.trim_end_matches('/').to_owned())
            }
            _ if addr.ip().is_unspecified() => None,
            _ => Some(format!("http://{addr}")),
        };
        Ok(codeflux_core::NodeConfig {
            url,
            lease: std::time::Duration::from_secs(self.lease_secs),
            ..codeflux_core::NodeConfig::default()
        })
    }

    /// Accounts' settings, for the public URL the server is reached at.
    pub fn auth(&self, public: &PublicUrl) -> codeflux_core::AuthConfig {
        codeflux_core::AuthConfig {
            enabled: self.auth_enabled(),
            signup: match self.signup.as_str() {
                "open" => codeflux_core::SignUpPolicy::Open,
                "closed" => codeflux_core::SignUpPolicy::Closed,
                _ => codeflux_core::SignUpPolicy::Invite,
            },
            public_url: public.origin.clone(),
            secure_cookies: public.https,
            ..codeflux_core::AuthConfig::default()
        }
    }

    /// The database to use: DATABASE_URL, or the SQLite file in the data dir.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) if !url.trim().is_empty() => url.trim().to_owned(),
            _ => codeflux_core::db::default_sqlite_url(&self.data_dir),
        }
    }
}
