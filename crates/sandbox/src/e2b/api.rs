//! E2B's control plane (REST, `https://api.<domain>`, header `X-API-Key`): create a sandbox from
//! a template, set its time to live, kill it. Errors keep E2B's own message (`{"code": N,
//! "message": "..."}`), never the key.

use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use super::body::{ERROR_BYTES, limited_text, said};

/// How long one API call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Creating may take longer (E2B resumes the template's snapshot).
const CREATE_TIMEOUT: Duration = Duration::from_secs(120);
/// The oldest envd we speak to (raw `application/octet-stream` uploads came in 0.5.7).
const MIN_ENVD: (u32, u32, u32) = (0, 5, 7);
/// Link-local and private ranges a sandbox may not reach (cloud metadata endpoints, E2B's own
/// network).
const DENY_OUT: &[&str] = &[
    "169.254.0.0/16",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
];
/// A live E2B sandbox as the API describes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SandboxInfo {
    #[serde(rename = "sandboxID")]
    pub sandbox_id: String,
    #[serde(rename = "envdVersion", default)]
    pub envd_version: String,
    /// Sent as X-Access-Token to envd (secure sandboxes).
    #[serde(rename = "envdAccessToken", default)]
    pub envd_access_token: Option<String>,
    /// Where its ports are reached (None: the client's domain).
    #[serde(default)]
    pub domain: Option<String>,
    /// Sent as `e2b-traffic-access-token` to its ports (they are not public).
    #[serde(rename = "trafficAccessToken", default)]
    pub traffic_access_token: Option<String>,
}

/// "0.6.4" (or "v0.6.4") as numbers; None when it is not a version.
fn version(v: &str) -> Option<(u32, u32, u32)> {
    let mut parts = v.trim().trim_start_matches('v').split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    let patch = parts
        .next()
        .map(|p| {
            p.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    Some((major, minor, patch))
}

/// A failure of the E2B API.
#[derive(Debug, Clone, thiserror::Error)]
#[error("E2B {what}: {message}")]
pub struct ApiError {
    pub what: &'static str,
    pub status: Option<u16>,
    pub message: String,
}

/// The REST client.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Api {
    pub fn new(http: reqwest::Client, base: &str, key: &str) -> Self {
        Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            key: key.to_owned(),
        }
    }

    /// A new sandbox of `template` (an id or a name) that lives `ttl` unless extended, with
    /// `metadata` (which project it is).
    pub async fn create(
        &self,
        template: &str,
        ttl: Duration,
        metadata: &[(&str, &str)],
    ) -> Result<SandboxInfo, ApiError> {
        let meta: serde_json::Map<String, serde_json::Value> = metadata
            .iter()
            .map(|(k, v)| ((*k).to_owned(), json!(v)))
            .collect();
        let body = json!({
            "templateID": template,
            // The API's default is 15 s: always say how long.
            "timeout": ttl.as_secs().max(1),
            "metadata": meta,
            "secure": true,
            // Packages come from the registry; E2B's sandboxes have the internet, not our
            // network (private and link-local ranges are denied below).
            "allow_internet_access": true,
            "network": {
                // Its ports answer only with the traffic token (our proxy has it), and the
                // dev server sees `localhost:<port>` as the Host (Vite and Next allow it).
                "allowPublicTraffic": false,
                "maskRequestHost": "localhost:${PORT}",
                "denyOut": DENY_OUT,
            },
        });
        let res = self
            .http
            .post(format!("{}/sandboxes", self.base))
            .header("X-API-Key", &self.key)
            .header("Content-Type", "application/json")
            .timeout(CREATE_TIMEOUT)
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| net("creating a sandbox", e))?;
        let status = res.status().as_u16();
        let text = limited_text(res, 64 * 1024).await;
        if status != 201 && status != 200 {
            return Err(refused("creating a sandbox", status, &text));
        }
        let info: SandboxInfo = serde_json::from_str(&text).map_err(|e| ApiError {
            what: "creating a sandbox",
            status: Some(status),
            message: format!("an answer we cannot read ({e})"),
        })?;
        if version(&info.envd_version).is_none_or(|v| v < MIN_ENVD) {
            // Not ours to use: it ends now rather than at its time to live.
            if let Err(e) = self.kill(&info.sandbox_id).await {
                tracing::warn!(sandbox = %info.sandbox_id, error = %e, "stopping a sandbox with an old envd failed");
            }
            return Err(ApiError {
                what: "creating a sandbox",
                status: Some(status),
                message: format!(
                    "the template's envd is {:?}; CodeFlux needs {}.{}.{} or newer (rebuild the template)",
                    info.envd_version, MIN_ENVD.0, MIN_ENVD.1, MIN_ENVD.2
                ),
            });
        }
        Ok(info)
    }

    /// The sandbox lives `ttl` from now. False: it is gone.
    pub async fn set_timeout(&self, sandbox_id: &str, ttl: Duration) -> Result<bool, ApiError> {
        let res = self
            .http
            .post(format!("{}/sandboxes/{sandbox_id}/timeout", self.base))
            .header("X-API-Key", &self.key)
            .header("Content-Type", "application/json")
            .body(json!({"timeout": ttl.as_secs().max(1)}).to_string())
            .timeout(CALL_TIMEOUT)
            .send()
            .await
            .map_err(|e| net("extending a sandbox", e))?;
        match res.status().as_u16() {
            200 | 204 => Ok(true),
            404 => Ok(false),
            s => Err(refused(
                "extending a sandbox",
                s,
                &limited_text(res, ERROR_BYTES).await,
            )),
        }
    }

    /// Kills the sandbox. False: it was gone already.
    pub async fn kill(&self, sandbox_id: &str) -> Result<bool, ApiError> {
        let res = self
            .http
            .delete(format!("{}/sandboxes/{sandbox_id}", self.base))
            .header("X-API-Key", &self.key)
            .timeout(CALL_TIMEOUT)
            .send()
            .await
            .map_err(|e| net("stopping a sandbox", e))?;
        match res.status().as_u16() {
            200 | 204 => Ok(true),
            404 => Ok(false),
            s => Err(refused(
                "stopping a sandbox",
                s,
                &limited_text(res, ERROR_BYTES).await,
            )),
        }
    }
}

fn net(what: &'static str, e: reqwest::Error) -> ApiError {
    ApiError {
        what,
        status: None,
        message: format!("E2B could not be reached ({})", e.without_url()),
    }
}

fn refused(what: &'static str, status: u16, body: &str) -> ApiError {
    let said = said(body);
    let hint = match status {
        401 | 403 => " (check E2B_API_KEY)",
        404 => " (is the template built? see sandbox-templates/*/e2b.toml)",
        429 => " (E2B's rate or sandbox limit)",
        _ => "",
    };
    ApiError {
        what,
        status: Some(status),
        message: format!("{status}: {said}{hint}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envd_versions_are_compared() {
        assert_eq!(version("0.6.4"), Some((0, 6, 4)));
        assert_eq!(version("v0.5.7-rc1"), Some((0, 5, 7)));
        assert_eq!(version("1.2"), Some((1, 2, 0)));
        assert_eq!(version(""), None);
        assert!(version("0.5.6").is_some_and(|v| v < MIN_ENVD));
        assert!(version("0.10.0").is_some_and(|v| v >= MIN_ENVD));
    }
}
