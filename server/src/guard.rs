//! Every request that is not a preview passes here before the app sees it:
//!
//! 1. **Host allowlist** (DNS rebinding): the app answers only for the host of the public URL,
//!    `localhost` and IP literals; anything else gets 421 and no app content.
//! 2. **Cross-site refusal** (CSRF): a state-changing request (any method but GET, HEAD and
//!    OPTIONS) must come from the app's own origin: its `Origin` is the public URL's origin or,
//!    for direct access (by IP or localhost), `http://<the request's Host>`; `Origin: null` and
//!    other origins (previews included) are refused 403 `forbidden`. Without `Origin`, a
//!    `Sec-Fetch-Site` of `cross-site` or `same-site` is refused. Requests with neither (curl,
//!    scripts) pass this check. Both hold with accounts off too.
//! 3. **Who asks**: `Authorization: Bearer <API token>` or the session cookie becomes an
//!    [`Actor`] in the request's extensions (accounts off: the local actor). Signed out, the API
//!    answers 401 (but for signing in and up) and pages redirect to /sign-in?next=....

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use codeflux_core::Actor;
use codeflux_protocol::AppError;

use crate::routes::AppState;

/// Reverse proxies whose `X-Forwarded-For` is believed.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

impl TrustedProxies {
    /// Parses addresses and CIDR ranges (`127.0.0.1`, `10.0.0.0/8`, `::1`, `fd00::/8`).
    pub fn parse(items: &[String]) -> anyhow::Result<TrustedProxies> {
        let mut out = Vec::new();
        for raw in items.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
            let (addr, bits) = match raw.split_once('/') {
                Some((a, b)) => (a, Some(b)),
                None => (raw, None),
            };
            let ip: IpAddr = addr.parse().map_err(|_| {
                anyhow::anyhow!("CODEFLUX_TRUSTED_PROXIES: \"{raw}\" is not an address or range")
            })?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let bits = match bits {
                Some(b) => b.parse::<u8>().ok().filter(|b| *b <= max).ok_or_else(|| {
                    anyhow::anyhow!("CODEFLUX_TRUSTED_PROXIES: bad prefix in \"{raw}\"")
                })?,
                None => max,
            };
            out.push((ip, bits));
        }
        Ok(TrustedProxies(out))
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        self.0.iter().any(|(net, bits)| match (net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(*bits)).unwrap_or(0);
                u32::from(*n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(*bits)).unwrap_or(0);
                u128::from(*n) & mask == u128::from(a) & mask
            }
            _ => false,
        })
    }

    /// The client's address: the peer, or, when the peer is a trusted proxy, the nearest
    /// address in `X-Forwarded-For` that is not one.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.contains(peer) {
            return peer;
        }
        let hops: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|h| h.trim().parse().ok())
            .collect();
        hops.into_iter()
            .rev()
            .find(|h| !self.contains(*h))
            .unwrap_or(peer)
    }
}

/// What the guard needs to know, read once at start.
#[derive(Clone, Debug)]
pub struct GuardConfig {
    /// Lowercase host of the public URL (no port).
    pub public_host: String,
    /// The public URL's origin: `scheme://host[:port]`.
    pub public_origin: String,
    /// The static site's root (files there are served to anyone).
    pub site_root: PathBuf,
    pub trusted: TrustedProxies,
}

/// API endpoints that work without an account.
const OPEN_API: &[&str] = &["/api/auth/sign_in", "/api/auth/sign_up"];
/// Pages that work without an account.
const OPEN_PAGES: &[&str] = &["/sign-in", "/sign-up", "/metrics"];

/// The host name of a Host header value (no port, brackets kept off IPv6, lowercase).
pub fn host_name(host: &str) -> String {
    let h = host.trim();
    let name = if let Some(rest) = h.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        h.rsplit_once(':')
            .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
            .map_or(h, |(name, _)| name)
    };
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl GuardConfig {
    /// Whether the app answers for this Host.
    pub fn host_allowed(&self, host: &str) -> bool {
        let name = host_name(host);
        !name.is_empty()
            && (name == self.public_host || name == "localhost" || name.parse::<IpAddr>().is_ok())
    }

    /// Whether a browser's `Origin` is the app's own, for a request that came with `host`.
    pub fn origin_allowed(&self, origin: &str, host: &str) -> bool {
        let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
        if origin == self.public_origin {
            return true;
        }
        // Direct access by IP or localhost: the page's origin is the address it was loaded from.
        host_name(host) != self.public_host
            && origin == format!("http://{}", host.trim().to_ascii_lowercase())
    }
}

fn json_error(status: StatusCode, e: &AppError) -> Response {
    let mut res = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_string(e).unwrap_or_default(),
    )
        .into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Why a state-changing request is refused as cross-site, if it is.
fn cross_site(cfg: &GuardConfig, headers: &HeaderMap, host: &str) -> Option<&'static str> {
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("null");
        if origin.trim() == "null" {
            return Some("a request from an opaque origin (Origin: null)");
        }
        if !cfg.origin_allowed(origin, host) {
            return Some("a request from another site");
        }
        return None;
    }
    match headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
    {
        Some("cross-site") => Some("a cross-site request"),
        Some("same-site") => Some("a request from a sibling site (such as a preview)"),
        _ => None,
    }
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

/// Whether `path` is a file of the static site (served to anyone).
fn is_static_file(cfg: &GuardConfig, path: &str) -> bool {
    let rel = path.trim_start_matches('/');
    !rel.is_empty()
        && !rel
            .split('/')
            .any(|p| p == ".." || p == "." || p.is_empty())
        && cfg.site_root.join(rel).is_file()
}

pub async fn guard(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let cfg = &state.guard;
    let path = req.uri().path().to_owned();
    if path == "/healthz" {
        return next.run(req).await;
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default();
    if !cfg.host_allowed(&host) {
        return (
            StatusCode::MISDIRECTED_REQUEST,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "421 Misdirected Request: this server does not answer for that host name.\n",
        )
            .into_response();
    }
    if !is_safe(req.method())
        && let Some(why) = cross_site(cfg, req.headers(), &host)
    {
        tracing::info!(%path, why, "refused a cross-site request");
        return json_error(
            StatusCode::FORBIDDEN,
            &AppError::forbidden(format!(
                "Refused: {why}. CodeFlux only accepts changes from its own pages (or from scripts that send no Origin)."
            )),
        );
    }
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
    let addr = cfg.trusted.client(peer, req.headers());
    req.extensions_mut().insert(app::ClientAddr(addr));

    let auth = state.services.auth();
    let actor = if !auth.enabled() {
        Some(Actor::Local)
    } else if let Some(token) = bearer(req.headers()) {
        match auth.from_bearer(&token).await {
            Ok(Some(a)) => Some(a),
            Ok(None) => {
                return json_error(
                    StatusCode::UNAUTHORIZED,
                    &AppError::unauthorized("That API token is not valid (unknown or revoked)."),
                );
            }
            Err(e) => {
                return json_error(
                    StatusCode::from_u16(e.http_status())
                        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                    &e,
                );
            }
        }
    } else if let Some(token) = app::cookie_value(req.headers(), app::api::SESSION_COOKIE) {
        match auth.from_session(&token).await {
            Ok(a) => a,
            Err(e) => {
                return json_error(
                    StatusCode::from_u16(e.http_status())
                        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                    &e,
                );
            }
        }
    } else {
        None
    };
    match actor {
        Some(a) => {
            req.extensions_mut().insert(a);
        }
        None if path.starts_with("/api/") => {
            if !OPEN_API.contains(&path.as_str()) {
                return json_error(
                    StatusCode::UNAUTHORIZED,
                    &AppError::unauthorized(
                        "Sign in first (or send an API token as Authorization: Bearer <token>).",
                    ),
                );
            }
        }
        None => {
            let page = matches!(*req.method(), Method::GET | Method::HEAD)
                && !path.starts_with("/pkg/")
                && !OPEN_PAGES.contains(&path.as_str())
                && !is_static_file(cfg, &path);
            if page {
                let target = req
                    .uri()
                    .path_and_query()
                    .map_or_else(|| path.clone(), |pq| pq.as_str().to_owned());
                let location = format!("/sign-in?next={}", urlencode(&target));
                let mut res = StatusCode::SEE_OTHER.into_response();
                if let Ok(v) = HeaderValue::from_str(&location) {
                    res.headers_mut().insert(header::LOCATION, v);
                }
                res.headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                return res;
            }
        }
    }
    next.run(req).await
}

fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> GuardConfig {
        GuardConfig {
            public_host: "codeflux.test".into(),
            public_origin: "https://codeflux.test:8443".into(),
            site_root: PathBuf::from("/nonexistent"),
            trusted: TrustedProxies::default(),
        }
    }

    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies() {
        let t =
            TrustedProxies::parse(&["127.0.0.1".into(), "10.0.0.0/8".into()]).unwrap_or_default();
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("203.0.113.9, 10.1.2.3"),
        );
        let lo = IpAddr::from([127, 0, 0, 1]);
        assert_eq!(t.client(lo, &h), IpAddr::from([203, 0, 113, 9]));
        let stranger = IpAddr::from([198, 51, 100, 7]);
        assert_eq!(
            t.client(stranger, &h),
            stranger,
            "a stranger's header is ignored"
        );
        assert!(TrustedProxies::parse(&["nonsense".into()]).is_err());
        assert!(TrustedProxies::parse(&["10.0.0.0/33".into()]).is_err());
        assert!(t.contains("::ffff:10.9.9.9".parse().unwrap_or(lo)));
    }

    #[test]
    fn hosts_are_allowed_only_when_they_are_ours() {
        let c = cfg();
        for ok in [
            "codeflux.test:8443",
            "CodeFlux.test",
            "localhost:3000",
            "127.0.0.1:3000",
            "[::1]:3000",
            "192.168.1.20",
        ] {
            assert!(c.host_allowed(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:3000",
            "",
            "x.localhost",
            "codeflux.test.evil.example",
        ] {
            assert!(!c.host_allowed(bad), "{bad}");
        }
    }

    #[test]
    fn origins_must_be_the_apps_own() {
        let c = cfg();
        assert!(c.origin_allowed("https://codeflux.test:8443", "codeflux.test:8443"));
        assert!(!c.origin_allowed("http://codeflux.test:8443", "codeflux.test:8443"));
        assert!(!c.origin_allowed("http://codeflux.test:8443", "127.0.0.1:3000"));
        assert!(c.origin_allowed("http://127.0.0.1:3000", "127.0.0.1:3000"));
        assert!(!c.origin_allowed("http://127.0.0.1:3001", "127.0.0.1:3000"));
        assert!(!c.origin_allowed("http://evil.example", "127.0.0.1:3000"));
        assert!(!c.origin_allowed(
            "http://0192f3a4-5b6c-7d8e-9f01-23456789abcd.preview.localhost:3000",
            "127.0.0.1:3000"
        ));
    }

    #[test]
    fn cross_site_requests_are_recognised() {
        let c = cfg();
        let mut h = HeaderMap::new();
        assert!(
            cross_site(&c, &h, "127.0.0.1:3000").is_none(),
            "curl passes"
        );
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(cross_site(&c, &h, "127.0.0.1:3000").is_some());
        h.insert("sec-fetch-site", HeaderValue::from_static("same-site"));
        assert!(cross_site(&c, &h, "127.0.0.1:3000").is_some());
        h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(cross_site(&c, &h, "127.0.0.1:3000").is_none());
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(cross_site(&c, &h, "127.0.0.1:3000").is_some());
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:3000"),
        );
        assert!(cross_site(&c, &h, "127.0.0.1:3000").is_none());
    }
}
