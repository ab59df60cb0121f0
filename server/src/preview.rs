//! Previews through the app's own port: `http://<project-id>.preview.localhost:<port>/`.
//!
//! A request whose Host names a project's preview never reaches the app's routes: it is
//! forwarded to that project's dev server (inside the project's network namespace), HTTP and
//! websocket upgrades (HMR) alike. The app's own cookies are not passed on. While the preview
//! starts (or revives from the latest version), a browser gets a small page that reloads
//! itself; other requests wait a little.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use codeflux_core::sandbox::{PreviewConn, PreviewState};
use hyper_util::rt::TokioIo;
use uuid::Uuid;

use crate::routes::AppState;

/// Cookies of CodeFlux itself start with this; the preview never sees them.
const APP_COOKIE_PREFIX: &str = "codeflux";
/// Set on a preview request one node forwards to the node that holds the project's sandbox,
/// to that node's id (never published): that node serves it itself, never forwards it again.
/// A client cannot make a node serve (and so revive) a preview held elsewhere with it.
const FORWARDED: &str = "x-codeflux-forwarded";

/// Routes preview hosts to [`proxy`], everything else to the app.
pub async fn gate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().host())
        .unwrap_or_default()
        .to_owned();
    match state.previews.project_of_host(&host) {
        Some(project) => proxy(state, project, req).await,
        None => next.run(req).await,
    }
}

/// `/preview/<id>/...` on the app: the stable address of a project's preview (stored in its
/// versions). Signed in and the project's owner: in the "ports" mode, a redirect to the
/// project's preview port with its key; in the other modes, to the preview host.
pub async fn redirect(
    State(state): State<AppState>,
    actor: Option<axum::Extension<codeflux_core::Actor>>,
    axum::extract::Path(params): axum::extract::Path<Vec<(String, String)>>,
    uri: axum::http::Uri,
) -> Response {
    let Some(axum::Extension(actor)) = actor else {
        return crate::routes::error_response(&codeflux_protocol::AppError::unauthorized(
            "Sign in first.",
        ));
    };
    let id = params
        .iter()
        .find(|(k, _)| k == "id")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let rest = params
        .iter()
        .find(|(k, _)| k == "rest")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let project = match state.services.get_project(&actor, &id).await {
        Ok(p) => p,
        Err(e) => return page(StatusCode::NOT_FOUND, "No such project", &e.message, None),
    };
    let location = match &state.ports {
        Some(ports) => match ports.port_for(&state, project.id).await {
            Ok(port) => ports.entry_url(project.id, port, &rest, uri.query()),
            Err(e) => {
                return page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The preview could not open",
                    &e.to_string(),
                    Some(10),
                );
            }
        },
        None => {
            let base = state
                .previews
                .url_template()
                .replace("{id}", &project.id.to_string());
            let mut url = format!("{base}{}", rest.trim_start_matches('/'));
            if let Some(q) = uri.query() {
                url.push('?');
                url.push_str(q);
            }
            url
        }
    };
    let mut res = StatusCode::TEMPORARY_REDIRECT.into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// A small page of our own on the preview host. With `retry`, the page reloads itself after
/// that many seconds and a 503 says `Retry-After`.
fn page(status: StatusCode, title: &str, text: &str, retry: Option<u32>) -> Response {
    let refresh = retry.is_some();
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let meta = match retry {
        Some(secs) => format!(r#"<meta http-equiv="refresh" content="{secs}">"#),
        None => String::new(),
    };
    let body = format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">{meta}<title>{t}</title>
<style>body{{margin:0;min-height:100vh;display:flex;align-items:center;justify-content:center;font-family:system-ui,sans-serif;background:#fafafa;color:#3f3f46}}@media (prefers-color-scheme:dark){{body{{background:#09090b;color:#d4d4d8}}}}main{{max-width:32rem;padding:2rem;text-align:center}}h1{{font-size:1.1rem;font-weight:600;margin:0 0 .5rem}}p{{margin:0;font-size:.9rem;opacity:.8;white-space:pre-wrap;word-break:break-word}}.dot{{display:inline-block;width:.6rem;height:.6rem;border-radius:50%;background:#6366f1;margin-right:.5rem;animation:p 1s infinite alternate}}@keyframes p{{to{{opacity:.2}}}}</style></head>
<body><main><h1>{dot}{t}</h1><p>{x}</p></main></body></html>"#,
        t = esc(title),
        x = esc(text),
        dot = if refresh {
            r#"<span class="dot"></span>"#
        } else {
            ""
        },
    );
    let mut res = (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(secs) = retry {
        res.headers_mut()
            .insert("x-codeflux-preview", HeaderValue::from_static("starting"));
        if status == StatusCode::SERVICE_UNAVAILABLE {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
    }
    res
}

pub(crate) async fn proxy(state: AppState, project: Uuid, req: Request) -> Response {
    // Another node holds the project's live sandbox: the request goes there (websockets too).
    // Not in the "ports" mode: a preview port and its key belong to the node that gave them.
    let me = state.services.runs().node().id.to_string();
    let mut req = req;
    let for_me = req
        .headers_mut()
        .remove(FORWARDED)
        .is_some_and(|v| v.as_bytes() == me.as_bytes());
    if !for_me
        && !matches!(*state.previews, crate::previews::PreviewMode::Ports { .. })
        && let Some((node, url)) = state.services.preview_elsewhere(project).await
    {
        return match connect_node(&url).await {
            Ok(stream) => {
                relay(
                    &state,
                    project,
                    req,
                    PreviewConn::new(stream, None),
                    Some(node),
                )
                .await
            }
            Err(e) => {
                // It beats its heartbeat: a passing failure; once it stops, the preview is
                // revived here.
                tracing::warn!(%project, node = %url, error = %e, "the node holding the preview is not reachable");
                page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The preview is on another server",
                    "That server did not answer; trying again.",
                    Some(2),
                )
            }
        };
    }
    serve_here(state, project, req).await
}

/// A connection to another node's app port (CODEFLUX_NODE_URL: http://host:port).
async fn connect_node(url: &str) -> std::io::Result<tokio::net::TcpStream> {
    let parsed = url::Url::parse(url)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    if parsed.scheme() != "http" {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "node URLs are http://host:port",
        ));
    }
    let host = parsed
        .host_str()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no host"))?;
    let port = parsed.port_or_known_default().unwrap_or(80);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    tokio::time::timeout(
        Duration::from_secs(3),
        tokio::net::TcpStream::connect((host, port)),
    )
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connecting timed out"))?
}

/// Serves the preview from this node's sandbox of the project (started or revived here).
async fn serve_here(state: AppState, project: Uuid, req: Request) -> Response {
    let services = &state.services;
    let navigation = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    // A page navigation gets the "starting" page quickly; assets and modules wait longer.
    let patience = if navigation {
        Duration::from_secs(4)
    } else {
        Duration::from_secs(90)
    };
    let started = Instant::now();
    loop {
        let status = match services.preview(project).await {
            Ok(s) => s,
            Err(e) if e.kind == codeflux_core::ErrorKind::NotFound => {
                return page(StatusCode::NOT_FOUND, "No such project", &e.message, None);
            }
            Err(e) => {
                return page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The preview could not start",
                    &e.message,
                    Some(5),
                );
            }
        };
        match status {
            PreviewState::Ready => break,
            PreviewState::Failed(why) => {
                return page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The preview stopped",
                    &why,
                    Some(5),
                );
            }
            PreviewState::Busy(why) => {
                return page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The server is busy",
                    &why,
                    Some(5),
                );
            }
            PreviewState::Starting(what) if started.elapsed() >= patience => {
                return page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Starting the preview…",
                    &what,
                    Some(2),
                );
            }
            PreviewState::Starting(_) | PreviewState::Stopped => {
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        }
    }

    let stream = match services.sandboxes().connect_preview(project).await {
        Ok(s) => s,
        Err(e) => {
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Starting the preview…",
                &format!("The dev server is not reachable yet ({e})."),
                Some(2),
            );
        }
    };
    relay(&state, project, req, stream, None).await
}

/// Sends the request over `stream` (to the dev server, or with `to_node` to the node that holds
/// it, which does the rest) and the answer back, websocket upgrades included.
async fn relay(
    state: &AppState,
    project: Uuid,
    mut req: Request,
    stream: PreviewConn,
    to_node: Option<Uuid>,
) -> Response {
    let navigation = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    let upstream_host = stream.upstream_host().map(str::to_owned);
    let upstream_headers = stream.upstream_headers().to_vec();
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    {
        Ok(pair) => pair,
        Err(e) => {
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "The preview did not answer",
                &format!("The dev server closed the connection ({e}); it may be restarting."),
                Some(2),
            );
        }
    };
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(%project, "preview connection ended: {e}");
        }
    });

    let wants_upgrade = req.headers().contains_key(header::UPGRADE);
    // The node that serves the page adds our script to it, once.
    let html_page = to_node.is_none()
        && navigation
        && !wants_upgrade
        && req.method() == axum::http::Method::GET;
    if html_page {
        crate::preview_inject::prepare_request(req.headers_mut());
    }
    let client_upgrade = wants_upgrade.then(|| hyper::upgrade::on(&mut req));
    strip_app_cookies(req.headers_mut());
    if let Some(node) = to_node {
        if let Ok(v) = HeaderValue::from_str(&node.to_string()) {
            req.headers_mut().insert(FORWARDED, v);
        }
    } else if let Some(h) = req.headers().get(header::HOST).cloned() {
        req.headers_mut().insert("x-forwarded-host", h);
    }
    // A sandbox elsewhere (E2B) is reached by its own host name and routing headers.
    if let Some(host) = upstream_host.and_then(|h| HeaderValue::from_str(&h).ok()) {
        req.headers_mut().insert(header::HOST, host);
    }
    for (name, value) in upstream_headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            req.headers_mut().insert(name, v);
        }
    }
    if let Ok(proto) = HeaderValue::from_str(state.previews.scheme()) {
        req.headers_mut().insert("x-forwarded-proto", proto);
    }
    // Origin-form for the upstream request line.
    if let Some(pq) = req.uri().path_and_query().cloned()
        && let Ok(uri) = pq.as_str().parse()
    {
        *req.uri_mut() = uri;
    }

    let mut res = match sender.send_request(req).await {
        Ok(r) => r,
        Err(e) => {
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "The preview did not answer",
                &format!("The dev server closed the connection ({e}); it may be restarting."),
                Some(2),
            );
        }
    };
    if res.status() == StatusCode::SWITCHING_PROTOCOLS
        && let Some(client_upgrade) = client_upgrade
    {
        let upstream_upgrade = hyper::upgrade::on(&mut res);
        tokio::spawn(async move {
            if let (Ok(client), Ok(upstream)) = tokio::join!(client_upgrade, upstream_upgrade) {
                let mut client = TokioIo::new(client);
                let mut upstream = TokioIo::new(upstream);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            }
        });
    }
    let (mut parts, body) = res.into_parts();
    let body = Body::new(body);
    if html_page && crate::preview_inject::wants(parts.status, &parts.headers) {
        let body = crate::preview_inject::inject(&mut parts.headers, body).await;
        return Response::from_parts(parts, body);
    }
    Response::from_parts(parts, body)
}

fn strip_app_cookies(headers: &mut axum::http::HeaderMap) {
    let kept: Vec<String> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|c| !c.is_empty() && !c.to_ascii_lowercase().starts_with(APP_COOKIE_PREFIX))
        .map(str::to_owned)
        .collect();
    headers.remove(header::COOKIE);
    if !kept.is_empty()
        && let Ok(v) = HeaderValue::from_str(&kept.join("; "))
    {
        headers.insert(header::COOKIE, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_cookies_are_stripped() {
        let mut h = axum::http::HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("codeflux_session=abc; theme=dark; CodeFlux-x=1"),
        );
        strip_app_cookies(&mut h);
        assert_eq!(
            h.get(header::COOKIE).and_then(|v| v.to_str().ok()),
            Some("theme=dark")
        );
    }
}
