//! E2B's control plane (REST, `https://api.<domain>`, header `X-API-Key`): create a sandbox from
//! a template, set its time to live, kill it. Errors keep E2B's own message (`{"code": N,
//! "message": "..."}`), never the key.

use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

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
            "allow_internet_access": true,
        });
        let res = self
            .http
            .post(format!("{}/sandboxes", self.base))
            .header("X-API-Key", &self.key)
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| net("creating a sandbox", e))?;
        let status = res.status().as_u16();
        let text = res.text().await.map_err(|e| net("creating a sandbox", e))?;
        if status != 201 && status != 200 {
            return Err(refused("creating a sandbox", status, &text));
        }
        serde_json::from_str(&text).map_err(|e| ApiError {
            what: "creating a sandbox",
            status: Some(status),
            message: format!("an answer we cannot read ({e})"),
        })
    }

    /// The sandbox lives `ttl` from now. False: it is gone.
    pub async fn set_timeout(&self, sandbox_id: &str, ttl: Duration) -> Result<bool, ApiError> {
        let res = self
            .http
            .post(format!("{}/sandboxes/{sandbox_id}/timeout", self.base))
            .header("X-API-Key", &self.key)
            .header("Content-Type", "application/json")
            .body(json!({"timeout": ttl.as_secs().max(1)}).to_string())
            .send()
            .await
            .map_err(|e| net("extending a sandbox", e))?;
        match res.status().as_u16() {
            200 | 204 => Ok(true),
            404 => Ok(false),
            s => Err(refused(
                "extending a sandbox",
                s,
                &res.text().await.unwrap_or_default(),
            )),
        }
    }

    /// Kills the sandbox. False: it was gone already.
    pub async fn kill(&self, sandbox_id: &str) -> Result<bool, ApiError> {
        let res = self
            .http
            .delete(format!("{}/sandboxes/{sandbox_id}", self.base))
            .header("X-API-Key", &self.key)
            .send()
            .await
            .map_err(|e| net("stopping a sandbox", e))?;
        match res.status().as_u16() {
            200 | 204 => Ok(true),
            404 => Ok(false),
            s => Err(refused(
                "stopping a sandbox",
                s,
                &res.text().await.unwrap_or_default(),
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
    let said = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_else(|| body.chars().take(300).collect());
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
