//! Previews on ports of their own (the "ports" mode of [`crate::previews`]): each project that
//! is previewed gets a listener on the app's address, from `CODEFLUX_PREVIEW_PORTS`, so its
//! preview is an origin of its own that any device reaching the app also reaches.
//!
//! Ports are few and easy to scan, so a listener serves only browsers that came through the
//! app: the app's `/preview/<id>/` (signed in, the project's owner) redirects with a key (an
//! HMAC of the project id under a secret made at start); the listener answers it with an
//! HttpOnly cookie for that port and a redirect to the same address without the key. Cookies
//! are shared by every port of a host, so the cookie's name carries the port, and the preview
//! proxy strips every `codeflux*` cookie before the dev server sees a request.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::routes::AppState;

/// The query parameter that carries the key from the app's redirect.
pub const KEY_PARAM: &str = "__cf_preview";

struct Listener {
    port: u16,
    task: JoinHandle<()>,
    last_used: Instant,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub struct PreviewPorts {
    listen: IpAddr,
    first: u16,
    last: u16,
    /// Host for preview URLs (brackets around IPv6).
    url_host: String,
    /// The app's origin (for the "open it from CodeFlux" page).
    app_origin: String,
    secret: [u8; 32],
    open: Mutex<HashMap<Uuid, Listener>>,
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl PreviewPorts {
    pub fn new(
        listen: IpAddr,
        first: u16,
        last: u16,
        url_host: String,
        app_origin: String,
    ) -> anyhow::Result<PreviewPorts> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret)
            .map_err(|e| anyhow::anyhow!("the system's random source failed: {e}"))?;
        Ok(PreviewPorts {
            listen,
            first,
            last,
            url_host,
            app_origin,
            secret,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// The key that lets a browser into a project's preview port.
    pub fn key(&self, project: Uuid) -> String {
        let mut h = Sha256::new();
        h.update(self.secret);
        h.update(project.as_bytes());
        h.update(self.secret);
        hex::encode(&h.finalize()[..16])
    }

    /// The port serving `project`'s preview, opening a listener when it has none.
    pub async fn port_for(
        self: &Arc<Self>,
        state: &AppState,
        project: Uuid,
    ) -> std::io::Result<u16> {
        if let Ok(mut open) = self.open.lock()
            && let Some(l) = open.get_mut(&project)
            && !l.task.is_finished()
        {
            l.last_used = Instant::now();
            return Ok(l.port);
        }
        for attempt in 0..2 {
            let taken: Vec<u16> = self
                .open
                .lock()
                .map(|o| o.values().map(|l| l.port).collect())
                .unwrap_or_default();
            for port in self.first..=self.last {
                if taken.contains(&port) {
                    continue;
                }
                let Ok(listener) = TcpListener::bind((self.listen, port)).await else {
                    continue;
                };
                let task =
                    tokio::spawn(serve(listener, self.clone(), state.clone(), project, port));
                if let Ok(mut open) = self.open.lock() {
                    open.insert(
                        project,
                        Listener {
                            port,
                            task,
                            last_used: Instant::now(),
                        },
                    );
                }
                tracing::info!(%project, port, "preview port opened");
                return Ok(port);
            }
            if attempt == 0 {
                // Every port is taken: the least recently used preview gives its port up.
                if let Ok(mut open) = self.open.lock()
                    && let Some(oldest) = open
                        .iter()
                        .min_by_key(|(_, l)| l.last_used)
                        .map(|(k, _)| *k)
                {
                    open.remove(&oldest);
                }
            }
        }
        Err(std::io::Error::other(format!(
            "no free port for the preview in {}-{} (CODEFLUX_PREVIEW_PORTS)",
            self.first, self.last
        )))
    }

    /// Closes the listener of a project (it was deleted).
    pub fn close(&self, project: Uuid) {
        if let Ok(mut open) = self.open.lock() {
            open.remove(&project);
        }
    }

    /// Where the browser goes for `project` on `port`, with the key and the rest of the path.
    pub fn entry_url(&self, project: Uuid, port: u16, rest: &str, query: Option<&str>) -> String {
        let mut q: Vec<String> = query
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty() && !p.starts_with(&format!("{KEY_PARAM}=")))
            .map(str::to_owned)
            .collect();
        q.push(format!("{KEY_PARAM}={}", self.key(project)));
        format!(
            "http://{}:{port}/{}?{}",
            self.url_host,
            rest.trim_start_matches('/'),
            q.join("&")
        )
    }
}

async fn serve(
    listener: TcpListener,
    ports: Arc<PreviewPorts>,
    state: AppState,
    project: Uuid,
    port: u16,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let (ports, state) = (ports.clone(), state.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let (ports, state) = (ports.clone(), state.clone());
                async move {
                    Ok::<_, Infallible>(
                        handle(&ports, state, project, port, req.map(Body::new)).await,
                    )
                }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades()
                .await
            {
                tracing::debug!(%project, port, "preview connection ended: {e}");
            }
        });
    }
}

fn cookie_name(port: u16) -> String {
    format!("codeflux_pv_{port}")
}

async fn handle(
    ports: &PreviewPorts,
    state: AppState,
    project: Uuid,
    port: u16,
    req: Request<Body>,
) -> Response<Body> {
    if let Ok(mut open) = ports.open.lock()
        && let Some(l) = open.get_mut(&project)
    {
        l.last_used = Instant::now();
    }
    let key = ports.key(project);
    let given = req.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|p| p.strip_prefix(&format!("{KEY_PARAM}=")))
            .map(str::to_owned)
    });
    if let Some(given) = given {
        if !constant_time_eq(given.as_bytes(), key.as_bytes()) {
            return refuse(ports, project);
        }
        // The key becomes a cookie of this port; the address loses it.
        let rest: Vec<&str> = req
            .uri()
            .query()
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty() && !p.starts_with(&format!("{KEY_PARAM}=")))
            .collect();
        let location = if rest.is_empty() {
            req.uri().path().to_owned()
        } else {
            format!("{}?{}", req.uri().path(), rest.join("&"))
        };
        let mut res = Response::new(Body::empty());
        *res.status_mut() = StatusCode::FOUND;
        let cookie = format!(
            "{}={key}; Path=/; HttpOnly; SameSite=Lax",
            cookie_name(port)
        );
        if let (Ok(l), Ok(c)) = (
            HeaderValue::from_str(&location),
            HeaderValue::from_str(&cookie),
        ) {
            res.headers_mut().insert(header::LOCATION, l);
            res.headers_mut().insert(header::SET_COOKIE, c);
        }
        res.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return res;
    }
    let ok = app::cookie_value(req.headers(), &cookie_name(port))
        .is_some_and(|c| constant_time_eq(c.as_bytes(), key.as_bytes()));
    if !ok {
        return refuse(ports, project);
    }
    crate::preview::proxy(state, project, req).await
}

fn refuse(ports: &PreviewPorts, project: Uuid) -> Response<Body> {
    let link = format!("{}/preview/{project}/", ports.app_origin);
    let body = format!(
        "<!doctype html><meta charset=utf-8><meta name=viewport content=\"width=device-width, initial-scale=1\"><title>Open this preview from CodeFlux</title><body style=\"font-family:system-ui,sans-serif;max-width:32rem;margin:20vh auto;padding:1rem;text-align:center\"><h1 style=\"font-size:1.1rem\">Open this preview from CodeFlux</h1><p>This address serves a project's preview only to browsers that open it from the project in CodeFlux.</p><p><a href=\"{link}\">Open it from CodeFlux</a></p>"
    );
    let mut res = Response::new(Body::from(body));
    *res.status_mut() = StatusCode::FORBIDDEN;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ_per_project_and_entry_urls_carry_them() {
        let p = PreviewPorts::new(
            IpAddr::from([127, 0, 0, 2]),
            41000,
            41009,
            "127.0.0.2".into(),
            "http://127.0.0.2:3000".into(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        assert_ne!(p.key(a), p.key(b));
        assert_eq!(p.key(a).len(), 32);
        let url = p.entry_url(a, 41003, "/src/App.tsx", Some("x=1&__cf_preview=old"));
        assert_eq!(
            url,
            format!(
                "http://127.0.0.2:41003/src/App.tsx?x=1&{KEY_PARAM}={}",
                p.key(a)
            )
        );
        assert!(constant_time_eq(b"abc", b"abc") && !constant_time_eq(b"abc", b"abd"));
    }
}
