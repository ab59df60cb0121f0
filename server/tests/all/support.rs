use std::path::PathBuf;

use codeflux_test_support::{ServerOptions, ServerProcess, TestDb, workspace_root};
use std::time::Duration;

use codeflux_test_support::scripted_llm::ScriptedLlm;
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use serde_json::Value;

pub fn root() -> PathBuf {
    workspace_root(env!("CARGO_MANIFEST_DIR"))
}

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_codeflux"))
}

/// Starts the server on a free port with its own data dir, on `db` (None: default SQLite).
pub fn start(
    data_dir: &std::path::Path,
    db: Option<&TestDb>,
    addr: Option<String>,
) -> ServerProcess {
    let mut env = Vec::new();
    if let Some(db) = db {
        env.push(("DATABASE_URL".to_owned(), db.url.clone()));
    }
    ServerProcess::start(ServerOptions {
        binary: binary(),
        workdir: root(),
        data_dir: data_dir.to_path_buf(),
        env,
        addr,
    })
    .expect("server starts")
}

/// An HTTP client (reqwest is built without a default TLS provider; install ring's).
pub fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// A server function call as any HTTP client makes it: URL-encoded POST in, JSON out.
pub async fn call(base: &str, name: &str, form: &[(&str, &str)]) -> (u16, Value) {
    call_as(base, None, name, form).await
}

/// [`call`] with an API token (`Authorization: Bearer`).
pub async fn call_as(
    base: &str,
    token: Option<&str>,
    name: &str,
    form: &[(&str, &str)],
) -> (u16, Value) {
    let mut req = http().post(format!("{base}/api/{name}")).form(form);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    let text = res.text().await.expect("body");
    let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, json)
}

pub async fn get(url: &str) -> (u16, String) {
    let res = http().get(url).send().await.expect("request");
    (res.status().as_u16(), res.text().await.expect("body"))
}

pub fn start_with_model(
    data: &std::path::Path,
    llm: &ScriptedLlm,
    addr: Option<String>,
) -> codeflux_test_support::ServerProcess {
    codeflux_test_support::ServerProcess::start(codeflux_test_support::ServerOptions {
        binary: crate::support::binary(),
        workdir: root(),
        data_dir: data.to_path_buf(),
        env: vec![
            ("LLM_BASE_URL".into(), llm.base_url.clone()),
            ("LLM_API_KEY".into(), "sk-sse-test".into()),
            ("LLM_MODEL".into(), "scripted".into()),
        ],
        addr,
    })
    .expect("server starts")
}

/// (id, event, data) of SSE events until `stop` says so (at most 60 s).
pub async fn sse(
    base: &str,
    project: &str,
    last_event_id: Option<&str>,
    stop: impl Fn(&str) -> bool,
) -> Vec<(String, String, Value)> {
    sse_as(base, None, project, last_event_id, stop).await
}

/// [`sse`] with an API token.
pub async fn sse_as(
    base: &str,
    token: Option<&str>,
    project: &str,
    last_event_id: Option<&str>,
    stop: impl Fn(&str) -> bool,
) -> Vec<(String, String, Value)> {
    let mut req = http()
        .get(format!("{base}/api/projects/{project}/events"))
        .header("accept", "text/event-stream");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id);
    }
    let res = req.send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut stream = res.bytes_stream().eventsource();
    let mut out = Vec::new();
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(60), stream.next())
            .await
            .unwrap_or_else(|_| panic!("no event in 60 s; so far {out:#?}"))
            .expect("stream open")
            .expect("valid SSE");
        let data: Value = serde_json::from_str(&ev.data).unwrap();
        let done = stop(&ev.event);
        out.push((ev.id, ev.event, data));
        if done {
            return out;
        }
    }
}

pub fn is_end(kind: &str) -> bool {
    matches!(
        kind,
        "run_finished" | "run_failed" | "run_cancelled" | "run_interrupted"
    )
}

/// The SSE events of a project until its next run ends.
pub async fn sse_until_end(base: &str, project: &str) -> Vec<(String, String, Value)> {
    sse(base, project, None, is_end).await
}

/// Signs up the first account (the admin) on a server with accounts on and returns an API
/// token of it.
pub async fn admin_token(base: &str) -> String {
    let res = http()
        .post(format!("{base}/api/auth/sign_up"))
        .form(&[
            ("email", "admin@test.dev"),
            ("password", "admin-password-1"),
        ])
        .send()
        .await
        .expect("sign-up");
    assert_eq!(res.status(), 200, "sign-up");
    let cookie = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("codeflux_session="))
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_owned();
    let res = http()
        .post(format!("{base}/api/auth/tokens/create"))
        .header("cookie", cookie)
        .form(&[("name", "tests")])
        .send()
        .await
        .expect("token");
    let v: Value = res.json().await.expect("json");
    v["token"].as_str().expect("a token").to_owned()
}
