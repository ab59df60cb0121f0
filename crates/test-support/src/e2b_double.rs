//! A test double of E2B on loopback, for tests only: its REST API (create, timeout, kill, with
//! `X-API-Key`) and the envd agent of each sandbox (`/files`, Connect-JSON
//! `process.Process/Start` streaming and `SendSignal`, with `X-Access-Token`), over real HTTP,
//! routed by the `E2b-Sandbox-Id` header like E2B's shared sandbox host. A "sandbox" is a
//! directory standing for `/home/user`; commands run there with `sh -c` (this double stands in
//! for E2B's machines; it isolates nothing).

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

type Body = BoxBody<Bytes, Infallible>;

struct Sandbox {
    dir: tempfile::TempDir,
    token: String,
    template: String,
}

#[derive(Default)]
struct State {
    sandboxes: HashMap<String, Sandbox>,
    /// (method, path) of every request, in order.
    log: Vec<(String, String)>,
    next: u64,
    pids: HashMap<u64, u32>,
}

/// The running double; stops when dropped.
pub struct E2bDouble {
    /// `http://127.0.0.1:<port>`: the API's base and envd's shared base.
    pub base_url: String,
    pub api_key: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for E2bDouble {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl E2bDouble {
    pub async fn start() -> anyhow::Result<E2bDouble> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let api_key = "e2b_0123456789abcdef".to_owned();
        let (st, key) = (state.clone(), api_key.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (st, key) = (st.clone(), key.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(req, st.clone(), key.clone()));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(E2bDouble {
            base_url: format!("http://{addr}"),
            api_key,
            state,
            task,
        })
    }

    /// The live sandboxes' ids.
    pub fn sandboxes(&self) -> Vec<String> {
        self.state
            .lock()
            .map(|s| s.sandboxes.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The directory standing for a sandbox's /home/user.
    pub fn home(&self, id: &str) -> Option<PathBuf> {
        self.state
            .lock()
            .ok()
            .and_then(|s| s.sandboxes.get(id).map(|b| b.dir.path().to_path_buf()))
    }

    /// The template a sandbox was created from.
    pub fn template(&self, id: &str) -> Option<String> {
        self.state
            .lock()
            .ok()
            .and_then(|s| s.sandboxes.get(id).map(|b| b.template.clone()))
    }

    /// (method, path) of every request so far.
    pub fn log(&self) -> Vec<(String, String)> {
        self.state.lock().map(|s| s.log.clone()).unwrap_or_default()
    }
}

fn json_response(status: u16, v: &Value) -> Response<Body> {
    let mut res = Response::new(Full::new(Bytes::from(v.to_string())).boxed());
    *res.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    res.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/json"),
    );
    res
}

fn error(status: u16, message: &str) -> Response<Body> {
    json_response(status, &json!({"code": status, "message": message}))
}

fn header(req: &Request<Incoming>, name: &str) -> String {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// A path inside the sandbox (absolute under /home/user, or relative to it) as a path in `dir`;
/// None when it leaves it.
fn inside(dir: &Path, path: &str) -> Option<PathBuf> {
    let rel = path
        .strip_prefix("/home/user")
        .unwrap_or(path)
        .trim_start_matches('/');
    if path.starts_with('/') && !path.starts_with("/home/user") {
        return None;
    }
    if rel.split('/').any(|c| c == "..") {
        return None;
    }
    Some(dir.join(rel))
}

fn query(req: &Request<Incoming>, key: &str) -> Option<String> {
    req.uri().query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<Mutex<State>>,
    key: String,
) -> Result<Response<Body>, Infallible> {
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    if let Ok(mut s) = state.lock() {
        s.log.push((method.clone(), path.clone()));
    }
    let sandbox = header(&req, "e2b-sandbox-id");
    if !sandbox.is_empty() {
        return Ok(envd(req, state, &sandbox, &method, &path).await);
    }
    if header(&req, "x-api-key") != key {
        return Ok(error(401, "Invalid API key"));
    }
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    Ok(match (method.as_str(), parts.as_slice()) {
        ("POST", ["sandboxes"]) => {
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let template = v["templateID"].as_str().unwrap_or_default().to_owned();
            if template.is_empty() || template == "missing" {
                return Ok(error(404, &format!("template '{template}' not found")));
            }
            let Ok(dir) = tempfile::tempdir() else {
                return Ok(error(500, "no space"));
            };
            let Ok(mut s) = state.lock() else {
                return Ok(error(500, "poisoned"));
            };
            s.next += 1;
            let id = format!("i{:08x}", s.next);
            let token = format!("tok-{id}");
            s.sandboxes.insert(
                id.clone(),
                Sandbox {
                    dir,
                    token: token.clone(),
                    template,
                },
            );
            json_response(
                201,
                &json!({"templateID": "tpl", "sandboxID": id, "clientID": "c", "envdVersion": "0.6.4",
                        "envdAccessToken": token, "domain": null}),
            )
        }
        ("POST", ["sandboxes", id, "timeout"]) => {
            let known = state.lock().is_ok_and(|s| s.sandboxes.contains_key(*id));
            if known {
                json_response(204, &Value::Null)
            } else {
                error(404, "sandbox not found")
            }
        }
        ("DELETE", ["sandboxes", id]) => {
            let gone = state.lock().ok().and_then(|mut s| s.sandboxes.remove(*id));
            if gone.is_some() {
                json_response(204, &Value::Null)
            } else {
                error(404, "sandbox not found")
            }
        }
        _ => error(404, "no such route"),
    })
}

async fn envd(
    req: Request<Incoming>,
    state: Arc<Mutex<State>>,
    sandbox: &str,
    method: &str,
    path: &str,
) -> Response<Body> {
    let Some((dir, token)) = state.lock().ok().and_then(|s| {
        s.sandboxes
            .get(sandbox)
            .map(|b| (b.dir.path().to_path_buf(), b.token.clone()))
    }) else {
        // E2B's edge answers 502 for a sandbox that is not running.
        let mut res = Response::new(Full::new(Bytes::from("sandbox not found")).boxed());
        *res.status_mut() = hyper::StatusCode::BAD_GATEWAY;
        return res;
    };
    if header(&req, "x-access-token") != token {
        return error(
            401,
            "unauthorized access, please provide a valid access token",
        );
    }
    match (method, path) {
        ("GET", "/files") => {
            let Some(p) = query(&req, "path").and_then(|p| inside(&dir, &p)) else {
                return error(400, "invalid path");
            };
            match tokio::fs::read(&p).await {
                Ok(bytes) => Response::new(Full::new(Bytes::from(bytes)).boxed()),
                Err(_) => error(404, "file not found"),
            }
        }
        ("POST", "/files") => {
            let Some(p) = query(&req, "path").and_then(|p| inside(&dir, &p)) else {
                return error(400, "invalid path");
            };
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            if let Some(parent) = p.parent() {
                let _ = tokio::fs::create_dir_all(parent).await;
            }
            match tokio::fs::write(&p, &body).await {
                Ok(()) => json_response(
                    200,
                    &json!([{"path": p.display().to_string(), "type": "file"}]),
                ),
                Err(e) => error(500, &e.to_string()),
            }
        }
        ("POST", "/process.Process/Start") => start(req, state, dir).await,
        ("POST", "/process.Process/SendSignal") => {
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let pid = v["process"]["pid"].as_u64().unwrap_or(0);
            let os = state.lock().ok().and_then(|s| s.pids.get(&pid).copied());
            match os {
                // The command's own process group (never 0 or 1: that would be ours or all).
                Some(os) if os > 1 => {
                    let _ = std::process::Command::new("kill")
                        .args(["-s", "KILL", "--", &format!("-{os}")])
                        .status();
                    json_response(200, &json!({}))
                }
                _ => json_response(
                    404,
                    &json!({"code": "not_found", "message": "process not found"}),
                ),
            }
        }
        _ => error(404, "no such route"),
    }
}

fn frame(flags: u8, v: &Value) -> Bytes {
    let json = v.to_string();
    let mut out = Vec::with_capacity(json.len() + 5);
    out.push(flags);
    out.extend_from_slice(&u32::try_from(json.len()).unwrap_or(0).to_be_bytes());
    out.extend_from_slice(json.as_bytes());
    Bytes::from(out)
}

async fn start(req: Request<Incoming>, state: Arc<Mutex<State>>, dir: PathBuf) -> Response<Body> {
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(64);
    let msg: Value = if body.len() >= 5 {
        serde_json::from_slice(&body[5..]).unwrap_or(Value::Null)
    } else {
        Value::Null
    };
    tokio::spawn(async move {
        let send = |b: Bytes| {
            let tx = tx.clone();
            async move { tx.send(Ok(Frame::data(b))).await.is_ok() }
        };
        let args: Vec<String> = msg["process"]["args"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let cwd = msg["process"]["cwd"].as_str().unwrap_or("/home/user");
        let Some(cwd) = inside(&dir, cwd).filter(|p| p.is_dir()) else {
            send(frame(
                2,
                &json!({"error": {"code": "invalid_argument", "message": "cwd does not exist"}}),
            ))
            .await;
            return;
        };
        let mut cmd = tokio::process::Command::new("sh");
        cmd.args(args.iter().skip_while(|a| *a != "-c"))
            .current_dir(&cwd)
            .env("HOME", &dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let Ok(mut child) = cmd.spawn() else {
            send(frame(
                2,
                &json!({"error": {"code": "internal", "message": "could not start"}}),
            ))
            .await;
            return;
        };
        let os = child.id().unwrap_or(0);
        let pid = {
            let Ok(mut s) = state.lock() else { return };
            s.next += 1;
            let pid = s.next;
            s.pids.insert(pid, os);
            pid
        };
        send(frame(0, &json!({"event": {"start": {"pid": pid}}}))).await;
        let (mut out, mut err) = (child.stdout.take(), child.stderr.take());
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let mut buf = vec![0u8; 4096];
        let mut ebuf = vec![0u8; 4096];
        loop {
            tokio::select! {
                n = async { match &mut out { Some(o) => o.read(&mut buf).await.ok(), None => std::future::pending().await } } => {
                    match n { Some(n) if n > 0 => { send(frame(0, &json!({"event": {"data": {"stdout": b64(&buf[..n])}}}))).await; } _ => out = None }
                }
                n = async { match &mut err { Some(e) => e.read(&mut ebuf).await.ok(), None => std::future::pending().await } } => {
                    match n { Some(n) if n > 0 => { send(frame(0, &json!({"event": {"data": {"stderr": b64(&ebuf[..n])}}}))).await; } _ => err = None }
                }
                else => break,
            }
            if out.is_none() && err.is_none() {
                break;
            }
        }
        let status = child.wait().await.ok();
        let code = status.and_then(|s| s.code()).unwrap_or(-1);
        // Zero values are left out, as protobuf's JSON does.
        let end = if code == 0 {
            json!({"exited": true, "status": "exit status 0"})
        } else {
            json!({"exitCode": code, "exited": code >= 0, "status": format!("exit status {code}")})
        };
        send(frame(0, &json!({"event": {"end": end}}))).await;
        send(frame(2, &json!({}))).await;
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    let mut res = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    res.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/connect+json"),
    );
    res
}
