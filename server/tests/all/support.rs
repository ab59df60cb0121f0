use std::path::PathBuf;

use codeflux_test_support::{ServerOptions, ServerProcess, TestDb, workspace_root};
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
    let res = http()
        .post(format!("{base}/api/{name}"))
        .form(form)
        .send()
        .await
        .expect("request");
    let status = res.status().as_u16();
    let text = res.text().await.expect("body");
    let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, json)
}

pub async fn get(url: &str) -> (u16, String) {
    let res = http().get(url).send().await.expect("request");
    (res.status().as_u16(), res.text().await.expect("body"))
}
