//! Where a project's preview is served, chosen from the public URL (issue 12):
//!
//! - **localhost**: the public URL is `localhost`/`127.0.0.1`/`[::1]` (a browser on this very
//!   machine): `http://<id>.preview.localhost:<port>/`, on the app's port; browsers resolve
//!   `*.localhost` to loopback by themselves.
//! - **domain**: `CODEFLUX_PREVIEW_DOMAIN=preview.example.com` (wildcard DNS and TLS at a
//!   reverse proxy): `<scheme>://<id>.preview.example.com/`, on the app's port behind the proxy.
//! - **ports**: anything else (a phone reaching `http://192.168.1.20:3000`): each project gets
//!   a port of its own on the app's address, so each preview is its own origin with no DNS
//!   set-up. The stable address is `<public URL>/preview/<id>/` on the app, which (signed in,
//!   the project's owner) redirects to the project's current port with a key; the port's
//!   listener turns the key into an HttpOnly cookie and serves only requests that carry it
//!   (see `preview_ports`).
//!
//! Every mode gives each project its own origin: a preview never shares the app's origin, so it
//! cannot use the app's API (the guard refuses other origins) nor read its cookies.

use std::net::IpAddr;

use uuid::Uuid;

use crate::config::PublicUrl;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PreviewMode {
    Localhost {
        port: u16,
    },
    Domain {
        scheme: String,
        /// `preview.example.com[:port]` as given (lowercase).
        domain: String,
        /// Its host part.
        host: String,
    },
    Ports {
        /// `scheme://host[:port]` of the app (the stable redirect's origin).
        app_origin: String,
        /// The host to put in preview URLs (brackets around IPv6).
        url_host: String,
        listen: IpAddr,
        first: u16,
        last: u16,
    },
}

/// Parses `CODEFLUX_PREVIEW_PORTS` (`first-last`).
pub fn parse_ports(raw: &str) -> anyhow::Result<(u16, u16)> {
    let (a, b) = raw
        .trim()
        .split_once('-')
        .ok_or_else(|| anyhow::anyhow!("CODEFLUX_PREVIEW_PORTS must look like 41000-41999"))?;
    let (a, b): (u16, u16) = (
        a.trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("CODEFLUX_PREVIEW_PORTS: \"{a}\" is not a port"))?,
        b.trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("CODEFLUX_PREVIEW_PORTS: \"{b}\" is not a port"))?,
    );
    if a == 0 || b < a {
        anyhow::bail!("CODEFLUX_PREVIEW_PORTS: {a}-{b} is not a range of ports");
    }
    Ok((a, b))
}

impl PreviewMode {
    /// Chooses the mode. `listen` is the address the app listens on.
    pub fn choose(
        public: &PublicUrl,
        app_port: u16,
        listen: IpAddr,
        domain: Option<&str>,
        ports: (u16, u16),
    ) -> anyhow::Result<PreviewMode> {
        if let Some(d) = domain.map(str::trim).filter(|d| !d.is_empty()) {
            let d = d
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .trim_start_matches('.')
                .trim_end_matches('/')
                .to_ascii_lowercase();
            let host = crate::guard::host_name(&d);
            if host.is_empty() || host.contains('/') || host.parse::<IpAddr>().is_ok() {
                anyhow::bail!(
                    "CODEFLUX_PREVIEW_DOMAIN must be a domain name (like preview.example.com), not \"{d}\""
                );
            }
            let scheme = if public.https { "https" } else { "http" };
            return Ok(PreviewMode::Domain {
                scheme: scheme.into(),
                domain: d,
                host,
            });
        }
        if matches!(public.host.as_str(), "localhost" | "127.0.0.1" | "::1") {
            return Ok(PreviewMode::Localhost { port: app_port });
        }
        let url_host = if public.host.contains(':') {
            format!("[{}]", public.host)
        } else {
            public.host.clone()
        };
        Ok(PreviewMode::Ports {
            app_origin: public.origin.clone(),
            url_host,
            listen,
            first: ports.0,
            last: ports.1,
        })
    }

    /// The preview address of every project, `{id}` standing for the project's id.
    pub fn url_template(&self) -> String {
        match self {
            PreviewMode::Localhost { port } => format!("http://{{id}}.preview.localhost:{port}/"),
            PreviewMode::Domain { scheme, domain, .. } => format!("{scheme}://{{id}}.{domain}/"),
            PreviewMode::Ports { app_origin, .. } => format!("{app_origin}/preview/{{id}}/"),
        }
    }

    /// The project a Host header names, if it is one of our preview hosts.
    pub fn project_of_host(&self, host: &str) -> Option<Uuid> {
        let name = crate::guard::host_name(host);
        let id = name
            .strip_suffix(".preview.localhost")
            .or_else(|| match self {
                PreviewMode::Domain { host, .. } => name
                    .strip_suffix(host.as_str())
                    .and_then(|r| r.strip_suffix('.')),
                _ => None,
            })?;
        if id.contains('.') {
            return None;
        }
        Uuid::parse_str(id).ok()
    }

    /// The scheme browsers use for previews (told to the dev server as X-Forwarded-Proto).
    pub fn scheme(&self) -> &str {
        match self {
            PreviewMode::Domain { scheme, .. } => scheme,
            _ => "http",
        }
    }

    /// Environment for dev servers: the preview host names they must accept (Vite refuses
    /// unknown Host headers).
    pub fn dev_env(&self) -> Vec<(String, String)> {
        match self {
            PreviewMode::Domain { host, .. } => vec![(
                "__VITE_ADDITIONAL_SERVER_ALLOWED_HOSTS".into(),
                format!(".{host}"),
            )],
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(raw: &str) -> PublicUrl {
        PublicUrl::parse(raw).unwrap_or_else(|e| panic!("{e}"))
    }

    const ID: &str = "01a227f0-1663-70d0-b4d8-61928362b786";

    #[test]
    fn the_mode_follows_the_public_url() {
        let lo = IpAddr::from([127, 0, 0, 1]);
        let m = PreviewMode::choose(
            &public("http://127.0.0.1:3000"),
            3000,
            lo,
            None,
            (41000, 41999),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(m.url_template(), "http://{id}.preview.localhost:3000/");
        let m = PreviewMode::choose(
            &public("http://192.168.1.20:3000"),
            3000,
            lo,
            None,
            (41000, 41999),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(m.url_template(), "http://192.168.1.20:3000/preview/{id}/");
        let m = PreviewMode::choose(
            &public("https://codeflux.test:8443"),
            3000,
            lo,
            Some("preview.codeflux.test:8443"),
            (41000, 41999),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(m.url_template(), "https://{id}.preview.codeflux.test:8443/");
        assert_eq!(
            m.project_of_host(&format!("{ID}.preview.codeflux.test:8443"))
                .map(|u| u.to_string()),
            Some(ID.to_owned())
        );
        assert!(m.project_of_host("x.preview.codeflux.test").is_none());
        assert!(
            m.project_of_host(&format!("a.{ID}.preview.codeflux.test"))
                .is_none()
        );
        assert!(m.project_of_host(&format!("{ID}.evil.test")).is_none());
        assert!(
            m.project_of_host(&format!("{ID}.preview.localhost:3000"))
                .is_some()
        );
        assert!(
            PreviewMode::choose(&public("https://x.test"), 1, lo, Some("10.0.0.1"), (1, 2))
                .is_err()
        );
    }

    #[test]
    fn port_ranges_are_checked() {
        assert_eq!(parse_ports("41000-41999").unwrap_or((0, 0)), (41000, 41999));
        for bad in ["", "41000", "a-b", "5-1", "0-10", "1-70000"] {
            assert!(parse_ports(bad).is_err(), "{bad}");
        }
    }
}
