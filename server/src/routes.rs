//! The HTTP surface: Leptos pages, /api server functions, /healthz and the static site.

use app::{App, shell};
use axum::Router;
use axum::body::Body;
use std::time::Duration;

use axum::Extension;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use codeflux_core::{Actor, Services};
use codeflux_protocol::AppError;
use futures_util::StreamExt;
use leptos::prelude::*;
use leptos_axum::{LeptosRoutes, generate_route_list};
use tokio_util::sync::CancellationToken;
use tower_http::compression::CompressionLayer;
use tower_http::services::ServeDir;

/// Largest server-function error body we inspect to set its status.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub leptos_options: LeptosOptions,
    pub services: Services,
    /// Host allowlist, cross-site refusal, who asks.
    pub guard: std::sync::Arc<crate::guard::GuardConfig>,
    /// How previews are addressed.
    pub previews: std::sync::Arc<crate::previews::PreviewMode>,
    /// Preview listeners (the "ports" mode only).
    pub ports: Option<std::sync::Arc<crate::preview_ports::PreviewPorts>>,
    /// Cancelled when the server shuts down: ends the open event streams.
    pub shutdown: CancellationToken,
}

impl axum::extract::FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}

/// What the router is set up with besides the pages.
pub struct Setup {
    pub guard: crate::guard::GuardConfig,
    pub previews: crate::previews::PreviewMode,
    pub ports: Option<std::sync::Arc<crate::preview_ports::PreviewPorts>>,
}

pub fn router(
    leptos_options: LeptosOptions,
    services: Services,
    setup: Setup,
    shutdown: CancellationToken,
) -> Router {
    let routes = generate_route_list(App);
    let state = AppState {
        leptos_options: leptos_options.clone(),
        services: services.clone(),
        guard: std::sync::Arc::new(setup.guard),
        previews: std::sync::Arc::new(setup.previews),
        ports: setup.ports,
        shutdown,
    };
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/projects/{id}/events", get(events))
        .route("/api/fragments/{id}/zip", get(fragment_zip))
        .route("/preview/{id}", get(crate::preview::redirect))
        .route("/preview/{id}/", get(crate::preview::redirect))
        .route("/preview/{id}/{*rest}", get(crate::preview::redirect))
        .leptos_routes_with_context(
            &state,
            routes,
            {
                let services = services.clone();
                move || provide_context(services.clone())
            },
            {
                let options = leptos_options.clone();
                move || shell(options.clone())
            },
        )
        // The front end, precompressed by `cargo xtask build` (brotli 11 / gzip 9).
        .nest_service(
            &format!("/{}", leptos_options.site_pkg_dir),
            ServeDir::new(
                std::path::Path::new(leptos_options.site_root.as_ref())
                    .join(leptos_options.site_pkg_dir.as_ref()),
            )
            .precompressed_br()
            .precompressed_gzip(),
        )
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(shell))
        .layer(middleware::from_fn(static_cache_headers))
        .layer(middleware::from_fn(api_status))
        .layer(CompressionLayer::new())
        // Host allowlist, cross-site refusal and who asks, for everything but previews.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::guard::guard,
        ))
        // Outermost: preview hosts go to the project's dev server, untouched by the rest.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::preview::gate,
        ))
        .with_state(state)
}

/// A project's run events as server-sent events: every stored event after `Last-Event-ID`
/// (header, or `last_event_id` in the query), then the live ones. Each has an `id:` (its
/// number in the project), an `event:` (its type) and JSON `data:`; a comment every 15 s keeps
/// the connection open.
async fn events(
    State(state): State<AppState>,
    actor: Option<Extension<Actor>>,
    Path(id): Path<String>,
    Query(query): Query<EventsQuery>,
    headers: HeaderMap,
) -> Response {
    let Some(Extension(actor)) = actor else {
        return error_response(&AppError::unauthorized("Sign in first."));
    };
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok())
        .or(query.last_event_id)
        .unwrap_or(0);
    let feed = match state.services.events(&actor, &id, after).await {
        Ok(f) => f,
        Err(e) => return error_response(&e),
    };
    let stream = futures_util::stream::unfold(feed, |mut feed| async move {
        let event = feed.next().await?;
        let data = serde_json::to_string(&event).unwrap_or_else(|_| "{}".to_owned());
        let sse = SseEvent::default()
            .id(event.seq.to_string())
            .event(event.event.kind())
            .data(data);
        Some((Ok::<_, std::convert::Infallible>(sse), feed))
    })
    .take_until(state.shutdown.cancelled_owned());
    let mut res = Sse::new(stream)
        .keep_alive(
            KeepAlive::new()
                .interval(Duration::from_secs(15))
                .text("keep-alive"),
        )
        .into_response();
    res.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    res
}

#[derive(serde::Deserialize)]
struct EventsQuery {
    last_event_id: Option<i64>,
}

pub fn error_response(e: &AppError) -> Response {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut res = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_string(e).unwrap_or_default(),
    )
        .into_response();
    if let Some(secs) = e.retry_after {
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    res
}

/// A version's files as a zip archive (`<project>-<title>.zip`).
async fn fragment_zip(
    State(state): State<AppState>,
    actor: Option<Extension<Actor>>,
    Path(id): Path<String>,
) -> Response {
    let Some(Extension(actor)) = actor else {
        return error_response(&AppError::unauthorized("Sign in first."));
    };
    let fragment = match state.services.fragment(&actor, &id).await {
        Ok(f) => f,
        Err(e) => return error_response(&e),
    };
    let name: String = fragment
        .title
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect::<String>()
        .split('-')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    let name = if name.is_empty() {
        "project".to_owned()
    } else {
        name
    };
    let built = tokio::task::spawn_blocking(move || -> zip::result::ZipResult<Vec<u8>> {
        let mut out = std::io::Cursor::new(Vec::new());
        let mut zip = zip::ZipWriter::new(&mut out);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(0o644);
        for (path, content) in &fragment.files {
            zip.start_file(format!("{name}/{path}"), opts)?;
            std::io::Write::write_all(&mut zip, content.as_bytes())?;
        }
        zip.finish()?;
        Ok(out.into_inner())
    })
    .await;
    match built {
        Ok(Ok(bytes)) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "application/zip".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{id}.zip\""),
                ),
            ],
            bytes,
        )
            .into_response(),
        _ => error_response(&AppError::internal("The archive could not be built.")),
    }
}

/// Prometheus text format, for a scraper on this machine (or behind a trusted proxy, the
/// client's real address on loopback) or an admin's API token; 403 for anyone else.
async fn metrics(State(state): State<AppState>, req: Request) -> Response {
    let local = req
        .extensions()
        .get::<app::ClientAddr>()
        .is_some_and(|a| a.0.is_loopback());
    let admin = matches!(
        req.extensions().get::<Actor>(),
        Some(Actor::Local | Actor::User { is_admin: true, .. })
    );
    if !local && !admin {
        return error_response(&AppError::forbidden(
            "Metrics are served to this machine or to an admin's API token only.",
        ));
    }
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.services.metrics_text().await,
    )
        .into_response()
}

/// 200 when the database answers, 503 otherwise.
async fn healthz(State(state): State<AppState>) -> Response {
    match state.services.health().await {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"status":"ok","database":"ok"}"#,
        )
            .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::json!({"status": "unavailable", "database": e.message}).to_string(),
        )
            .into_response(),
    }
}

/// Server functions answer every error with status 500; this gives each error the status of
/// its kind (400 bad input, 404 not found, ...), so a client's mistake is never a 500.
async fn api_status(req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    if res.status() != StatusCode::INTERNAL_SERVER_ERROR
        || !res
            .headers()
            .contains_key(server_fn::error::SERVER_FN_ERROR_HEADER)
    {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    let bytes = match axum::body::to_bytes(body, ERROR_BODY_LIMIT).await {
        Ok(b) => b,
        Err(_) => return Response::from_parts(parts, Body::empty()),
    };
    if let Ok(err) = serde_json::from_slice::<AppError>(&bytes) {
        parts.status =
            StatusCode::from_u16(err.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        parts.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(secs) = err.retry_after {
            parts
                .headers
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        // A refused sign-in or sign-up sets no session (a redirect for plain forms neither).
        if parts.status.is_client_error() {
            parts.headers.remove(header::SET_COOKIE);
            parts.headers.remove(header::LOCATION);
        }
    }
    Response::from_parts(parts, Body::from(bytes))
}

/// The wasm, JS and CSS keep their names across builds, so browsers must revalidate them
/// (cheap: ETag / Last-Modified answers 304) rather than run a stale front end.
async fn static_cache_headers(req: Request, next: Next) -> Response {
    let is_pkg = req.uri().path().starts_with("/pkg/");
    let mut res = next.run(req).await;
    if is_pkg && res.status().is_success() {
        res.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    res
}
