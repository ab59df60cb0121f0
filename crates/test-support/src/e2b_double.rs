//! A test double of E2B on loopback, for tests only: its REST API (create, timeout, kill, with
//! `X-API-Key`) and the envd agent of each sandbox (`/files`, Connect-JSON
//! `process.Process/Start` streaming and `SendSignal`, with `X-Access-Token`), over real HTTP,
//! routed by the `E2b-Sandbox-Id` and `E2b-Sandbox-Port` headers like E2B's shared sandbox
//! host: port 49983 is envd, any other port of a sandbox is proxied to the one loopback port
//! the double gave that sandbox (exported to its processes as PORT), answering 502 while
//! nothing listens there, as E2B's edge does (websocket upgrades included). A "sandbox" is a directory standing for
//! `/home/user`, seeded with a template's files; a template may name a start command that runs
//! when a sandbox is created (E2B resumes a snapshot of the template with its start command
//! running). Commands run there with `sh -c` (this double stands in for E2B's machines; it
//! isolates nothing).

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};

use crate::loopback::{Body, body_bytes, json_response, serve};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

struct Sandbox {
    dir: tempfile::TempDir,
    token: String,
    template: String,
    /// The loopback port standing for every port of the sandbox but envd's.
    port: u16,
    /// When E2B ends it (its time to live).
    end: std::time::Instant,
    /// The create request's body.
    created_with: Value,
    /// Needed on requests to its ports when they are not public.
    traffic_token: Option<String>,
}

/// What a template of the double holds.
#[derive(Clone, Debug, Default)]
pub struct DoubleTemplate {
    /// Files a new sandbox starts with (copied, node_modules left out).
    pub seed: Option<PathBuf>,
    /// Runs in a new sandbox's home (with PORT set) as E2B's snapshot of the template would.
    pub start_cmd: Option<String>,
}

#[derive(Default)]
struct State {
    sandboxes: HashMap<String, Sandbox>,
    /// (method, path) of every request, in order.
    log: Vec<(String, String)>,
    next: u64,
    /// envd pid -> (sandbox, OS process group).
    pids: HashMap<u64, (String, u32)>,
    /// Known templates; empty: any name but "missing" is accepted, empty.
    templates: HashMap<String, DoubleTemplate>,
}

/// The running double; stops when dropped.
pub struct E2bDouble {
    /// `http://127.0.0.1:<port>`: the API's base and envd's shared base.
    pub base_url: String,
    pub api_key: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
    reaper: tokio::task::JoinHandle<()>,
}

impl Drop for E2bDouble {
    fn drop(&mut self) {
        self.task.abort();
        self.reaper.abort();
        if let Ok(mut s) = self.state.lock() {
            let ids: Vec<String> = s.sandboxes.keys().cloned().collect();
            for id in ids {
                kill_sandbox(&mut s, &id);
            }
        }
    }
}

/// Removes a sandbox and kills every process it started.
fn kill_sandbox(s: &mut State, id: &str) -> bool {
    let groups: Vec<u32> = s
        .pids
        .values()
        .filter(|(sb, _)| sb == id)
        .map(|(_, g)| *g)
        .collect();
    for g in groups {
        kill_group(g);
    }
    s.pids.retain(|_, (sb, _)| sb != id);
    s.sandboxes.remove(id).is_some()
}

/// Kills a process group of the double's own (never 0 or 1: that would be ours or all).
fn kill_group(g: u32) {
    if g > 1 {
        let _ = std::process::Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{g}")])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

impl E2bDouble {
    pub async fn start() -> anyhow::Result<E2bDouble> {
        Self::start_with(Vec::new()).await
    }

    /// A double that knows only `templates` (name, contents).
    pub async fn start_with(templates: Vec<(String, DoubleTemplate)>) -> anyhow::Result<E2bDouble> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State {
            templates: templates.into_iter().collect(),
            ..State::default()
        }));
        let api_key = "e2b_0123456789abcdef".to_owned();
        let (st, key) = (state.clone(), api_key.clone());
        let task = serve(listener, move |req| handle(req, st.clone(), key.clone()));
        // E2B ends a sandbox when its time to live runs out.
        let st = state.clone();
        let reaper = tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                if let Ok(mut s) = st.lock() {
                    let now = std::time::Instant::now();
                    let ended: Vec<String> = s
                        .sandboxes
                        .iter()
                        .filter(|(_, b)| b.end <= now)
                        .map(|(id, _)| id.clone())
                        .collect();
                    for id in ended {
                        kill_sandbox(&mut s, &id);
                    }
                }
            }
        });
        Ok(E2bDouble {
            base_url: format!("http://{addr}"),
            api_key,
            state,
            task,
            reaper,
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

    /// How long the sandbox has left to live.
    pub fn ttl_left(&self, id: &str) -> Option<std::time::Duration> {
        self.state.lock().ok().and_then(|s| {
            s.sandboxes
                .get(id)
                .map(|b| b.end.saturating_duration_since(std::time::Instant::now()))
        })
    }

    /// The body the sandbox was created with.
    pub fn created_with(&self, id: &str) -> Option<Value> {
        self.state
            .lock()
            .ok()
            .and_then(|s| s.sandboxes.get(id).map(|b| b.created_with.clone()))
    }

    /// Ends a sandbox as E2B would on its own (its time ran out, or someone killed it).
    pub fn end(&self, id: &str) -> bool {
        self.state
            .lock()
            .is_ok_and(|mut s| kill_sandbox(&mut s, id))
    }

    /// (method, path) of every request so far.
    pub fn log(&self) -> Vec<(String, String)> {
        self.state.lock().map(|s| s.log.clone()).unwrap_or_default()
    }
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
        let port = header(&req, "e2b-sandbox-port");
        if !port.is_empty() && port != "49983" {
            return Ok(to_port(req, state, &sandbox).await);
        }
        return Ok(envd(req, state, &sandbox, &method, &path).await);
    }
    if header(&req, "x-api-key") != key {
        return Ok(error(401, "Invalid API key"));
    }
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    Ok(match (method.as_str(), parts.as_slice()) {
        ("POST", ["sandboxes"]) => {
            let body = body_bytes(req).await;
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let template = v["templateID"].as_str().unwrap_or_default().to_owned();
            let known = state.lock().ok().and_then(|s| {
                if s.templates.is_empty() {
                    (template != "missing").then(DoubleTemplate::default)
                } else {
                    s.templates.get(&template).cloned()
                }
            });
            let Some(tpl) = known.filter(|_| !template.is_empty()) else {
                return Ok(error(404, &format!("template '{template}' not found")));
            };
            let Ok(dir) = tempfile::tempdir() else {
                return Ok(error(500, "no space"));
            };
            if let Some(seed) = &tpl.seed
                && let Err(e) = copy_tree(seed, dir.path())
            {
                return Ok(error(500, &format!("seeding the sandbox: {e}")));
            }
            let Ok(port) = free_port() else {
                return Ok(error(500, "no port"));
            };
            let home = dir.path().to_path_buf();
            let (id, token) = {
                let Ok(mut s) = state.lock() else {
                    return Ok(error(500, "poisoned"));
                };
                s.next += 1;
                let id = format!("i{:08x}", s.next);
                let token = format!("tok-{id}");
                // The API's default time to live is 15 s.
                let ttl = v["timeout"].as_u64().unwrap_or(15);
                let private = v["network"]["allowPublicTraffic"] == json!(false);
                s.sandboxes.insert(
                    id.clone(),
                    Sandbox {
                        dir,
                        token: token.clone(),
                        template,
                        port,
                        end: std::time::Instant::now() + std::time::Duration::from_secs(ttl),
                        created_with: v.clone(),
                        traffic_token: private.then(|| format!("traffic-{id}")),
                    },
                );
                (id, token)
            };
            let traffic = state
                .lock()
                .ok()
                .and_then(|s| s.sandboxes.get(&id).and_then(|b| b.traffic_token.clone()));
            if let Some(cmd) = &tpl.start_cmd {
                let spawned = tokio::process::Command::new("sh")
                    .args(["-c", cmd])
                    .current_dir(&home)
                    .env("HOME", &home)
                    .env("PORT", port.to_string())
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .process_group(0)
                    .spawn();
                match spawned {
                    Ok(child) => {
                        if let (Some(os), Ok(mut s)) = (child.id(), state.lock()) {
                            s.next += 1;
                            let pid = s.next;
                            s.pids.insert(pid, (id.clone(), os));
                        }
                        // Reaped in the background; killed with the sandbox.
                        tokio::spawn(async move {
                            let mut child = child;
                            let _ = child.wait().await;
                        });
                    }
                    Err(e) => return Ok(error(500, &format!("start command: {e}"))),
                }
            }
            json_response(
                201,
                &json!({"templateID": "tpl", "sandboxID": id, "clientID": "c", "envdVersion": "0.6.4",
                        "envdAccessToken": token, "domain": null, "trafficAccessToken": traffic}),
            )
        }
        ("POST", ["sandboxes", id, "timeout"]) => {
            let body = body_bytes(req).await;
            let secs = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v["timeout"].as_u64());
            let Some(secs) = secs else {
                return Ok(error(400, "timeout is required"));
            };
            let known = state
                .lock()
                .is_ok_and(|mut s| match s.sandboxes.get_mut(*id) {
                    Some(b) => {
                        b.end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
                        true
                    }
                    None => false,
                });
            if known {
                json_response(204, &Value::Null)
            } else {
                error(404, "sandbox not found")
            }
        }
        ("DELETE", ["sandboxes", id]) => {
            let gone = state.lock().is_ok_and(|mut s| kill_sandbox(&mut s, id));
            if gone {
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
    if (method, path) == ("GET", "/health") {
        let mut res = Response::new(Full::new(Bytes::new()).boxed());
        *res.status_mut() = hyper::StatusCode::NO_CONTENT;
        return res;
    }
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
            if p.is_dir() {
                return error(400, "path is a directory");
            }
            match tokio::fs::read(&p).await {
                Ok(bytes) => Response::new(Full::new(Bytes::from(bytes)).boxed()),
                Err(_) => error(404, "file not found"),
            }
        }
        ("POST", "/files") => {
            let Some(p) = query(&req, "path").and_then(|p| inside(&dir, &p)) else {
                return error(400, "invalid path");
            };
            let body = body_bytes(req).await;
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
        ("POST", "/process.Process/Start") => {
            let port = state
                .lock()
                .ok()
                .and_then(|s| s.sandboxes.get(sandbox).map(|b| b.port))
                .unwrap_or(0);
            start(req, state, dir, sandbox.to_owned(), port).await
        }
        ("POST", "/process.Process/SendSignal") => {
            let body = body_bytes(req).await;
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let pid = v["process"]["pid"].as_u64().unwrap_or(0);
            let os = state.lock().ok().and_then(|s| {
                s.pids
                    .get(&pid)
                    .filter(|(sb, _)| sb == sandbox)
                    .map(|(_, g)| *g)
            });
            match os {
                Some(os) if os > 1 => {
                    kill_group(os);
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

async fn start(
    req: Request<Incoming>,
    state: Arc<Mutex<State>>,
    dir: PathBuf,
    sandbox_id: String,
    port: u16,
) -> Response<Body> {
    let body = body_bytes(req).await;
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
            .env("PORT", port.to_string())
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
            s.pids.insert(pid, (sandbox_id.clone(), os));
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

/// A free loopback port (bound and let go).
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Copies a template's files (node_modules, .git and the E2B build files left out, as the
/// template's image has them).
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if [
            "node_modules",
            ".git",
            "e2b.toml",
            "e2b.Dockerfile",
            "compile_page.sh",
            "start_vite.sh",
        ]
        .iter()
        .any(|n| name == *n)
        {
            continue;
        }
        let kind = entry.file_type()?;
        let dest = to.join(&name);
        if kind.is_dir() {
            std::fs::create_dir_all(&dest)?;
            copy_tree(&entry.path(), &dest)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &dest)?;
        }
    }
    Ok(())
}

/// A request to one of a sandbox's ports: proxied to the sandbox's loopback port; 502 while
/// nothing listens there (E2B's edge says the port is not open).
async fn to_port(
    req: Request<Incoming>,
    state: Arc<Mutex<State>>,
    sandbox: &str,
) -> Response<Body> {
    let found = state.lock().ok().and_then(|s| {
        s.sandboxes.get(sandbox).map(|b| {
            (
                b.port,
                b.traffic_token.clone(),
                b.created_with["network"]["maskRequestHost"]
                    .as_str()
                    .map(str::to_owned),
            )
        })
    });
    let mut req = req;
    let port = match found {
        Some((_, Some(t), _)) if header(&req, "e2b-traffic-access-token") != t => {
            return error(
                403,
                "the sandbox's ports are private: send its traffic token",
            );
        }
        Some((port, _, mask)) => {
            let asked = header(&req, "e2b-sandbox-port");
            if let Some(h) = mask
                .map(|m| m.replace("${PORT}", &asked))
                .and_then(|m| hyper::header::HeaderValue::from_str(&m).ok())
            {
                req.headers_mut().insert(hyper::header::HOST, h);
            }
            Some(port)
        }
        None => None,
    };
    let bad_gateway = |msg: &str| {
        let mut res = Response::new(Full::new(Bytes::from(msg.to_owned())).boxed());
        *res.status_mut() = hyper::StatusCode::BAD_GATEWAY;
        res
    };
    let Some(port) = port else {
        return bad_gateway("sandbox not found");
    };
    let Ok(stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return bad_gateway("The sandbox is running but port is not open");
    };
    let Ok((mut sender, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    else {
        return bad_gateway("the port closed the connection");
    };
    tokio::spawn(conn.with_upgrades());
    // A websocket (HMR): the two upgraded connections are joined once the port says 101.
    let client_upgrade = req
        .headers()
        .contains_key(hyper::header::UPGRADE)
        .then(|| hyper::upgrade::on(&mut req));
    match sender.send_request(req).await {
        Ok(mut res) if res.status() == hyper::StatusCode::SWITCHING_PROTOCOLS => {
            let upstream = hyper::upgrade::on(&mut res);
            if let Some(client) = client_upgrade {
                tokio::spawn(async move {
                    if let (Ok(c), Ok(u)) = tokio::join!(client, upstream) {
                        let _ = tokio::io::copy_bidirectional(
                            &mut TokioIo::new(c),
                            &mut TokioIo::new(u),
                        )
                        .await;
                    }
                });
            }
            let (parts, _) = res.into_parts();
            Response::from_parts(parts, Full::new(Bytes::new()).boxed())
        }
        Ok(res) => {
            let (parts, body) = res.into_parts();
            match body.collect().await {
                Ok(b) => Response::from_parts(parts, Full::new(b.to_bytes()).boxed()),
                Err(_) => bad_gateway("the port closed the connection"),
            }
        }
        Err(_) => bad_gateway("the port closed the connection"),
    }
}
