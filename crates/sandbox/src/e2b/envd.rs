//! envd, the agent inside an E2B sandbox (port 49983): files over plain HTTP (`/files`) and
//! processes over Connect RPC (`/process.Process/Start`, server-streaming JSON; `SendSignal`).
//! Every request carries the sandbox's access token (`X-Access-Token`) and the routing headers
//! E2B's edge understands (`E2b-Sandbox-Id`, `E2b-Sandbox-Port`).

use std::time::Duration;

use base64::Engine as _;
use serde_json::json;
use tokio::sync::mpsc;

use super::body::{ERROR_BYTES, limited_text, said};
use super::connect::{Frame, Frames, envelope};
use crate::output::CappedOutput;

/// envd's port inside every sandbox.
pub const ENVD_PORT: u16 = 49983;
/// How long a file transfer or a unary call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// A failure talking to envd.
#[derive(Debug, Clone, thiserror::Error)]
#[error("E2B sandbox {what}: {message}")]
pub struct EnvdError {
    pub what: &'static str,
    pub status: Option<u16>,
    pub message: String,
}

/// What a finished command gave.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Finished {
    pub exit_code: i32,
    /// Output kept (stdout and stderr in arrival order), at most `keep` bytes: head and tail.
    pub output: String,
    /// Bytes dropped from the middle of the output.
    pub omitted: usize,
    pub timed_out: bool,
}

/// One sandbox's envd.
#[derive(Clone)]
pub struct Envd {
    http: reqwest::Client,
    /// `https://49983-<id>.<domain>` (or a fixed base for every sandbox, routed by headers).
    base: String,
    sandbox_id: String,
    token: Option<String>,
}

impl Envd {
    pub fn new(http: reqwest::Client, base: &str, sandbox_id: &str, token: Option<String>) -> Self {
        Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            sandbox_id: sandbox_id.to_owned(),
            token,
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("E2b-Sandbox-Id", &self.sandbox_id)
            .header("E2b-Sandbox-Port", ENVD_PORT.to_string());
        if let Some(t) = &self.token {
            r = r.header("X-Access-Token", t);
        }
        r
    }

    /// Writes a file (parents made), as the sandbox's user.
    pub async fn write(&self, path: &str, content: &[u8]) -> Result<(), EnvdError> {
        let res = self
            .request(reqwest::Method::POST, &files_path(path))
            .header("Content-Type", "application/octet-stream")
            .body(content.to_vec())
            .timeout(CALL_TIMEOUT)
            .send()
            .await
            .map_err(|e| net("writing a file", e))?;
        match res.status().as_u16() {
            200 | 204 => Ok(()),
            s => Err(refused(
                "writing a file",
                s,
                &limited_text(res, ERROR_BYTES).await,
            )),
        }
    }

    /// Reads a file of at most `limit` bytes; None when it does not exist. A larger file is
    /// refused with status 413 once `limit` bytes arrived (never held in memory whole).
    pub async fn read(&self, path: &str, limit: u64) -> Result<Option<Vec<u8>>, EnvdError> {
        let mut res = self
            .request(reqwest::Method::GET, &files_path(path))
            .timeout(CALL_TIMEOUT)
            .send()
            .await
            .map_err(|e| net("reading a file", e))?;
        match res.status().as_u16() {
            200 => {}
            404 => return Ok(None),
            s => {
                return Err(refused(
                    "reading a file",
                    s,
                    &limited_text(res, ERROR_BYTES).await,
                ));
            }
        }
        let too_large = |size: u64| EnvdError {
            what: "reading a file",
            status: Some(413),
            message: format!("{size} bytes or more; the limit is {limit}"),
        };
        if let Some(len) = res.content_length()
            && len > limit
        {
            return Err(too_large(len));
        }
        let mut out = Vec::new();
        while let Some(chunk) = res.chunk().await.map_err(|e| net("reading a file", e))? {
            out.extend_from_slice(&chunk);
            if out.len() as u64 > limit {
                return Err(too_large(out.len() as u64));
            }
        }
        Ok(Some(out))
    }

    /// Runs `sh -c command` in `cwd` until it ends or `timeout` passes (then it is killed),
    /// sending output to `progress` as it comes and keeping at most `keep` bytes of it.
    pub async fn run(
        &self,
        command: &str,
        cwd: &str,
        timeout: Duration,
        keep: usize,
        progress: Option<mpsc::Sender<String>>,
    ) -> Result<Finished, EnvdError> {
        let body = envelope(&json!({
            "process": {"cmd": "/bin/sh", "args": ["-c", command], "cwd": cwd, "envs": {}},
            "stdin": false,
        }));
        let res = self
            .request(reqwest::Method::POST, "/process.Process/Start")
            .header("Content-Type", "application/connect+json")
            .header("Connect-Protocol-Version", "1")
            .header("Keepalive-Ping-Interval", "50")
            // envd kills the process when this passes.
            .header("Connect-Timeout-Ms", timeout.as_millis().to_string())
            .body(body)
            .send();
        // The answer's head must come soon; the stream then lasts as long as the command.
        let mut res = tokio::time::timeout(CALL_TIMEOUT, res)
            .await
            .map_err(|_| EnvdError {
                what: "starting a command",
                status: None,
                message: "the sandbox did not answer in time".into(),
            })?
            .map_err(|e| net("starting a command", e))?;
        let status = res.status().as_u16();
        if status != 200 {
            return Err(refused(
                "starting a command",
                status,
                &limited_text(res, ERROR_BYTES).await,
            ));
        }
        let mut frames = Frames::default();
        let mut out = CappedOutput::new(keep.max(64));
        let mut pid = None;
        let deadline = tokio::time::Instant::now() + timeout + Duration::from_secs(5);
        loop {
            let chunk = match tokio::time::timeout_at(deadline, res.chunk()).await {
                Ok(Ok(Some(c))) => c,
                Ok(Ok(None)) => {
                    return Err(EnvdError {
                        what: "running a command",
                        status: None,
                        message: "the stream ended before the command did".into(),
                    });
                }
                Ok(Err(e)) => return Err(net("running a command", e)),
                Err(_) => {
                    if let Some(pid) = pid {
                        self.kill(pid).await;
                    }
                    return Ok(out.into_finished(-1, true));
                }
            };
            frames.push(&chunk);
            while let Some(frame) = frames.next_frame().map_err(|e| EnvdError {
                what: "running a command",
                status: None,
                message: e.to_string(),
            })? {
                match frame {
                    Frame::Message(m) => {
                        let event = &m["event"];
                        if let Some(p) = event["start"]["pid"].as_u64() {
                            pid = Some(p);
                        }
                        for stream in ["stdout", "stderr", "pty"] {
                            if let Some(b64) = event["data"][stream].as_str() {
                                let bytes = base64::engine::general_purpose::STANDARD
                                    .decode(b64)
                                    .unwrap_or_default();
                                if let Some(tx) = &progress {
                                    // A slow reader loses progress, never the command.
                                    let _ =
                                        tx.try_send(String::from_utf8_lossy(&bytes).into_owned());
                                }
                                out.push(&bytes);
                            }
                        }
                        if event.get("end").is_some() {
                            let end = &event["end"];
                            // Zero values are left out of the JSON: no exitCode means 0.
                            let code = end["exitCode"].as_i64().unwrap_or(0);
                            return Ok(out.into_finished(i32::try_from(code).unwrap_or(-1), false));
                        }
                    }
                    Frame::End(Some((code, message))) => {
                        let timed_out = code == "deadline_exceeded";
                        if timed_out {
                            return Ok(out.into_finished(-1, true));
                        }
                        return Err(EnvdError {
                            what: "running a command",
                            status: None,
                            message: format!("{code}: {message}"),
                        });
                    }
                    Frame::End(None) => {
                        return Err(EnvdError {
                            what: "running a command",
                            status: None,
                            message: "the stream ended without the command's end".into(),
                        });
                    }
                }
            }
        }
    }

    /// Whether the sandbox runs: Some(true) when envd answers its health check, Some(false)
    /// when E2B's edge says the sandbox is not running (502), None when that cannot be told
    /// now (a network failure).
    pub async fn health(&self) -> Option<bool> {
        let res = self
            .request(reqwest::Method::GET, "/health")
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .ok()?;
        match res.status().as_u16() {
            200 | 204 => Some(true),
            502 => Some(false),
            _ => None,
        }
    }

    /// Kills a process (best effort: it may be gone).
    pub async fn kill(&self, pid: u64) {
        let res = self
            .request(reqwest::Method::POST, "/process.Process/SendSignal")
            .header("Content-Type", "application/json")
            .header("Connect-Protocol-Version", "1")
            .body(json!({"process": {"pid": pid}, "signal": "SIGNAL_SIGKILL"}).to_string())
            .timeout(Duration::from_secs(15))
            .send()
            .await;
        if let Err(e) = res {
            tracing::debug!(
                pid,
                "killing a process in an E2B sandbox: {}",
                e.without_url()
            );
        }
    }
}

/// `/files?path=<path>&username=user`, the path percent-encoded.
fn files_path(path: &str) -> String {
    let mut enc = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            enc.push(char::from(b));
        } else {
            enc.push_str(&format!("%{b:02X}"));
        }
    }
    format!("/files?path={enc}&username=user")
}

impl CappedOutput {
    fn into_finished(self, exit_code: i32, timed_out: bool) -> Finished {
        let (output, omitted) = self.finish();
        Finished {
            exit_code,
            output,
            omitted,
            timed_out,
        }
    }
}

/// `s` as one word for `sh` (single-quoted).
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn net(what: &'static str, e: reqwest::Error) -> EnvdError {
    EnvdError {
        what,
        status: None,
        message: format!("the sandbox could not be reached ({})", e.without_url()),
    }
}

fn refused(what: &'static str, status: u16, body: &str) -> EnvdError {
    let said = said(body);
    EnvdError {
        what,
        status: Some(status),
        message: format!("{status}: {said}"),
    }
}
