//! The `codeflux` binary: configuration, start-up (migrate), the HTTP server, shutdown.

mod config;
mod guard;
mod preview;
mod preview_inject;
mod preview_ports;
mod previews;
mod routes;

use anyhow::{Context, Result};
use clap::Parser;
use std::sync::Arc;

use codeflux_core::Services;
use codeflux_core::sandbox::SandboxProvider;
use codeflux_core::sandbox::e2b::E2bProvider;
use codeflux_core::sandbox::local::LocalProvider;
use leptos::config::get_configuration;
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

use crate::config::{Cli, Command};

#[tokio::main]
async fn main() -> Result<()> {
    // .env first, so that its values count as environment for the parser below.
    let dotenv = dotenvy::dotenv();
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,sea_orm=warn"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cli.config.log_format == "json" {
        logs.json().flatten_event(true).init();
    } else {
        logs.init();
    }
    if let Ok(path) = dotenv {
        tracing::info!(path = %path.display(), "read .env");
    }
    let config = cli.config;

    let command = cli.command.unwrap_or(Command::Serve);
    if command == Command::PrepareTemplates {
        let provider =
            LocalProvider::new(config.sandbox(0)?).context("setting up the sandboxes")?;
        let started = std::time::Instant::now();
        let dirs = provider
            .prepare_templates()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        for d in dirs {
            println!("prepared {}", d.display());
        }
        println!(
            "templates ready in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data dir {}", config.data_dir.display()))?;
    let db_url = config.database_url();
    tracing::info!(database = %codeflux_core::db::redact_url(&db_url), "connecting and migrating");
    let db = codeflux_core::db::connect_and_migrate(&db_url)
        .await
        .with_context(|| {
            format!(
                "opening the database {}",
                codeflux_core::db::redact_url(&db_url)
            )
        })?;

    match command {
        Command::PrepareTemplates => Ok(()),
        Command::Seed => {
            let created = codeflux_core::seed_samples(&db)
                .await
                .map_err(|e| anyhow::anyhow!("{}", e.message))?;
            println!("seeded {created} sample projects");
            Ok(())
        }
        Command::Serve => serve(config, db).await,
    }
}

async fn serve(config: config::Config, db: codeflux_core::db::Db) -> Result<()> {
    let leptos_toml = config.leptos_toml.display().to_string();
    let mut leptos_options = get_configuration(Some(&leptos_toml))
        .with_context(|| format!("reading {leptos_toml}"))?
        .leptos_options;
    if let Some(addr) = config.addr {
        leptos_options.site_addr = addr;
    }
    let site_root = std::path::Path::new(leptos_options.site_root.as_ref());
    if !site_root
        .join(leptos_options.site_pkg_dir.as_ref())
        .exists()
    {
        tracing::warn!(
            site_root = %site_root.display(),
            "the front end is not built: pages will not hydrate (run `cargo xtask run`)"
        );
    }

    config.check_listen(leptos_options.site_addr)?;
    let listener = TcpListener::bind(leptos_options.site_addr)
        .await
        .with_context(|| format!("binding {}", leptos_options.site_addr))?;
    let addr = listener.local_addr()?;
    let public = match &config.public_url {
        Some(raw) => config::PublicUrl::parse(raw)?,
        None => config::PublicUrl::from_addr(addr),
    };
    let ports = previews::parse_ports(&config.preview_ports)?;
    let mode = previews::PreviewMode::choose(
        &public,
        addr.port(),
        addr.ip(),
        config.preview_domain.as_deref(),
        ports,
    )?;
    if public.https && matches!(mode, previews::PreviewMode::Ports { .. }) {
        tracing::warn!(
            "CODEFLUX_PUBLIC_URL is https but previews would be served over http on their own ports, \
             which browsers block inside an https page: set CODEFLUX_PREVIEW_DOMAIN (see the README)"
        );
    }
    tracing::info!(previews = %mode.url_template(), "previews");
    let mut sandbox_cfg = config.sandbox(addr.port())?;
    sandbox_cfg.preview_url = mode.url_template();
    sandbox_cfg.dev_env = mode.dev_env();
    let sandboxes: Arc<dyn SandboxProvider> = match config.e2b(&mode.url_template())? {
        Some(e2b) => {
            tracing::info!(api = %e2b.api_url, "sandboxes on E2B");
            Arc::new(E2bProvider::new(e2b).context("setting up the E2B sandboxes")?)
        }
        None => {
            Arc::new(LocalProvider::new(sandbox_cfg).context("setting up the local sandboxes")?)
        }
    };
    let mut core = config.core();
    core.auth = config.auth(&public);
    core.node = config.node(addr)?;
    if core.auth.enabled {
        tracing::info!(public_url = %public.origin, signup = %config.signup, "accounts on");
    } else {
        tracing::warn!(%addr, "accounts off (CODEFLUX_AUTH=off): one person on this machine");
    }
    let services = Services::new(db, sandboxes.clone(), core);
    services
        .runs()
        .start()
        .await
        .map_err(|e| anyhow::anyhow!("starting the run queue: {}", e.message))?;
    let runs = services.runs().clone();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let guard = guard::GuardConfig {
        public_host: public.host.clone(),
        public_origin: public.origin.clone(),
        site_root: std::path::PathBuf::from(leptos_options.site_root.as_ref()),
        trusted: guard::TrustedProxies::parse(&config.trusted_proxies)?,
    };
    let ports = match &mode {
        previews::PreviewMode::Ports {
            app_origin,
            url_host,
            listen,
            first,
            last,
        } => Some(Arc::new(preview_ports::PreviewPorts::new(
            *listen,
            *first,
            *last,
            url_host.clone(),
            app_origin.clone(),
        )?)),
        _ => None,
    };
    let app = routes::router(
        leptos_options,
        services,
        routes::Setup {
            guard,
            previews: mode,
            ports,
        },
        shutdown.clone(),
    );

    // Tests and scripts read this line to learn the port.
    println!("codeflux listening on http://{addr}");
    tracing::info!(%addr, "serving");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown_signal().await;
        shutdown.cancel();
    })
    .await?;
    runs.stop().await;
    sandboxes.stop_all().await;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
