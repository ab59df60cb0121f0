//! Where a sandbox's ports are reached, and connections to them.
//!
//! On E2B a port is `https://<port>-<sandbox>.<domain>`: TLS to E2B's edge, which routes by
//! the Host (and by the `E2b-Sandbox-Id`/`E2b-Sandbox-Port` headers on its shared host). With
//! `sandbox_url` every request goes to that one address instead (E2B's shared host
//! `https://sandbox.<domain>`, or the loopback double in tests; plain http only to loopback),
//! routed by the headers alone.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls;

use super::E2bConfig;
use crate::PreviewConn;

/// How one port of one sandbox is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PortAddr {
    /// The Host every request names: `<port>-<sandbox>.<domain>`, or with `sandbox_url` its
    /// own host (E2B's shared host routes by the headers alone).
    pub host: String,
    /// Where the TCP connection goes.
    pub connect_host: String,
    pub connect_port: u16,
    pub tls: bool,
    pub sandbox_id: String,
    pub port: u16,
    /// E2B's `e2b-traffic-access-token` (the sandbox's ports are not public).
    traffic_token: Option<String>,
}

impl PortAddr {
    pub fn new(
        cfg: &E2bConfig,
        domain: &str,
        sandbox_id: &str,
        port: u16,
        traffic_token: Option<String>,
    ) -> Result<Self, String> {
        let mut addr = match &cfg.sandbox_url {
            Some(raw) => {
                let (connect_host, connect_port, tls) = url_parts(raw)?;
                Self {
                    host: String::new(),
                    connect_host,
                    connect_port,
                    tls,
                    sandbox_id: sandbox_id.to_owned(),
                    port,
                    traffic_token: traffic_token.clone(),
                }
            }
            None => Self {
                host: String::new(),
                connect_host: format!("{port}-{sandbox_id}.{domain}"),
                connect_port: 443,
                tls: true,
                sandbox_id: sandbox_id.to_owned(),
                port,
                traffic_token,
            },
        };
        addr.host = addr.authority();
        Ok(addr)
    }

    /// host[:port] of where the connection goes (the port left out when it is the default).
    fn authority(&self) -> String {
        let default = if self.tls { 443 } else { 80 };
        let host = if self.connect_host.contains(':') {
            format!("[{}]", self.connect_host)
        } else {
            self.connect_host.clone()
        };
        if self.connect_port == default {
            host
        } else {
            format!("{host}:{}", self.connect_port)
        }
    }

    /// The base URL of requests to this port.
    pub fn base_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.host)
    }

    /// The headers E2B's edge routes by.
    pub fn routing_headers(&self) -> Vec<(&'static str, String)> {
        let mut h = vec![
            ("e2b-sandbox-id", self.sandbox_id.clone()),
            ("e2b-sandbox-port", self.port.to_string()),
        ];
        if let Some(t) = &self.traffic_token {
            h.push(("e2b-traffic-access-token", t.clone()));
        }
        h
    }

    /// An HTTP/1.1 connection to the port, for the preview proxy.
    pub async fn connect(
        &self,
        in_use: Option<Box<dyn Send + Sync>>,
    ) -> std::io::Result<PreviewConn> {
        let tcp = tokio::time::timeout(
            Duration::from_secs(10),
            TcpStream::connect((self.connect_host.as_str(), self.connect_port)),
        )
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connecting timed out"))??;
        let _ = tcp.set_nodelay(true);
        let conn = if self.tls {
            let name = rustls::pki_types::ServerName::try_from(self.connect_host.clone())
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            let tls = tokio::time::timeout(
                Duration::from_secs(10),
                TlsConnector::from(tls_config()?).connect(name, tcp),
            )
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "the TLS handshake timed out")
            })??;
            PreviewConn::new(tls, in_use)
        } else {
            PreviewConn::new(tcp, in_use)
        };
        Ok(conn.with_upstream(self.host.clone(), self.routing_headers()))
    }
}

/// (host, port, tls) of an `http(s)://host[:port]` address. Plain http only to loopback: a
/// sandbox's traffic never crosses a network unencrypted.
pub(super) fn url_parts(raw: &str) -> Result<(String, u16, bool), String> {
    let (tls, rest) = if let Some(r) = raw.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = raw.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(format!("{raw}: not an http(s):// address"));
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let default_port = if tls { 443 } else { 80 };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or(format!("{raw}: a bad IPv6 address"))?;
        match after.strip_prefix(':') {
            Some(p) => (
                h,
                p.parse()
                    .map_err(|_| format!("{raw}: the port is not a number"))?,
            ),
            None => (h, default_port),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse()
                    .map_err(|_| format!("{raw}: the port is not a number"))?,
            ),
            None => (authority, default_port),
        }
    };
    let host = host.to_owned();
    if host.is_empty() {
        return Err(format!("{raw}: no host"));
    }
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !tls && !loopback {
        return Err(format!(
            "{raw}: plain http is only allowed to this machine; use https"
        ));
    }
    Ok((host, port, tls))
}

/// TLS to E2B's edge: the web's roots (webpki-roots), HTTP/1.1, the ring provider.
fn tls_config() -> std::io::Result<Arc<rustls::ClientConfig>> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Ok(Arc::new(config))
        })
        .clone()
        .map_err(std::io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            url_parts("http://127.0.0.1:4000/x"),
            Ok(("127.0.0.1".into(), 4000, false))
        );
        assert_eq!(
            url_parts("https://sandbox.e2b.app"),
            Ok(("sandbox.e2b.app".into(), 443, true))
        );
        assert!(url_parts("http://e2b.example.com").is_err());
        assert!(url_parts("ftp://x").is_err());
        let mut cfg = E2bConfig::new("k", "e2b.app", "http://{id}.preview.localhost:3000/");
        let a = PortAddr::new(&cfg, "e2b.app", "i1", 5173, None).unwrap();
        assert_eq!(a.host, "5173-i1.e2b.app");
        assert_eq!(a.base_url(), "https://5173-i1.e2b.app");
        cfg.sandbox_url = Some("http://127.0.0.1:9000".into());
        let a = PortAddr::new(&cfg, "e2b.app", "i1", 5173, None).unwrap();
        assert_eq!(a.host, "127.0.0.1:9000");
        assert_eq!(a.base_url(), "http://127.0.0.1:9000");
        assert_eq!(
            a.routing_headers(),
            vec![
                ("e2b-sandbox-id", "i1".to_owned()),
                ("e2b-sandbox-port", "5173".to_owned())
            ]
        );
        let a = PortAddr::new(&cfg, "e2b.app", "i1", 5173, Some("t".into())).unwrap();
        assert!(
            a.routing_headers()
                .contains(&("e2b-traffic-access-token", "t".to_owned()))
        );
    }
}
