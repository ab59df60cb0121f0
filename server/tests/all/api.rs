use codeflux_test_support::{Backend, TestDb};
use serde_json::Value;

use crate::support::{call, get, start};

/// A server function call that must fail: name, form, status, a word the message must hold.
type BadCall<'a> = (&'a str, Vec<(&'a str, &'a str)>, u16, &'a str);

/// The person's messages (runs add ASSISTANT messages on their own time).
fn user_messages(list: &Value) -> Vec<Value> {
    list.as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "USER")
        .cloned()
        .collect()
}

const PROMPT: &str = "Build a habit tracker with dark mode \"and\" ü \\ emoji 🚀";

async fn server_functions_over_http(backend: Backend) {
    let db = TestDb::new(backend).await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let srv = start(
        data.path(),
        (backend == Backend::Postgres).then_some(&db),
        None,
    );
    let base = srv.base_url.clone();

    let (st, p1) = call(&base, "projects/create", &[("prompt", PROMPT)]).await;
    assert_eq!(st, 200, "{p1}");
    assert_eq!(p1["template"], "vite-react", "default template");
    let name = p1["name"].as_str().unwrap();
    assert!(
        name.len() > 3 && name.contains('-'),
        "readable name: {name}"
    );
    let id1 = p1["id"].as_str().unwrap().to_owned();

    let (st, p2) = call(
        &base,
        "projects/create",
        &[("prompt", "A recipe book"), ("template", "nextjs")],
    )
    .await;
    assert_eq!(st, 200, "{p2}");
    assert_eq!(p2["template"], "nextjs");
    let id2 = p2["id"].as_str().unwrap().to_owned();

    let (st, list) = call(&base, "projects/get_many", &[]).await;
    assert_eq!(st, 200);
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![id2.as_str(), id1.as_str()], "newest first");

    let (st, got) = call(&base, "projects/get", &[("id", &id1)]).await;
    assert_eq!(st, 200);
    for key in ["id", "name", "template", "description", "created_at"] {
        assert_eq!(got[key], p1[key], "{key}");
    }

    let (st, msgs) = call(&base, "messages/get_many", &[("project_id", &id1)]).await;
    assert_eq!(st, 200);
    let msgs = user_messages(&msgs);
    assert_eq!(msgs.len(), 1);
    assert_eq!(
        msgs[0]["content"], PROMPT,
        "the prompt round-trips byte for byte"
    );
    assert_eq!(msgs[0]["role"], "USER");
    assert_eq!(msgs[0]["type"], "RESULT");
    assert_eq!(msgs[0]["fragment"], Value::Null);

    let (st, m) = call(
        &base,
        "messages/create",
        &[("project_id", &id1), ("content", "  Add a weekly view  ")],
    )
    .await;
    assert_eq!(st, 200, "{m}");
    assert_eq!(m["content"], "Add a weekly view");
    let (_, msgs) = call(&base, "messages/get_many", &[("project_id", &id1)]).await;
    let msgs = user_messages(&msgs);
    let contents: Vec<&str> = msgs
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, vec![PROMPT, "Add a weekly view"], "oldest first");

    // Every client mistake: a 4xx with a clear message, and nothing stored.
    let missing = "00000000-0000-4000-8000-000000000000";
    let long = "x".repeat(50_001);
    let bad: Vec<BadCall> = vec![
        ("projects/create", vec![("prompt", "")], 400, "empty"),
        ("projects/create", vec![("prompt", "  \n\t ")], 400, "empty"),
        ("projects/create", vec![("prompt", &long)], 400, "50000"),
        (
            "projects/create",
            vec![("prompt", "ok"), ("template", "cobol-app")],
            400,
            "cobol-app",
        ),
        ("projects/create", vec![], 400, "empty"),
        (
            "projects/get",
            vec![("id", "not-a-uuid")],
            400,
            "not-a-uuid",
        ),
        ("projects/get", vec![], 400, "missing"),
        ("projects/get", vec![("id", missing)], 404, missing),
        ("messages/get_many", vec![("project_id", "zzz")], 400, "zzz"),
        (
            "messages/get_many",
            vec![("project_id", missing)],
            404,
            missing,
        ),
        (
            "messages/create",
            vec![("project_id", missing), ("content", "hi")],
            404,
            missing,
        ),
        (
            "messages/create",
            vec![("project_id", &id1), ("content", "")],
            400,
            "empty",
        ),
        (
            "messages/create",
            vec![("project_id", &id1), ("content", &long)],
            400,
            "50000",
        ),
    ];
    for (name, form, want, needle) in bad {
        let (st, body) = call(&base, name, &form).await;
        assert_eq!(st, want, "{name} {form:?}: {body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(needle),
            "{name}: message {message:?} should mention {needle:?}"
        );
        assert!(body["kind"].is_string(), "{body}");
    }
    let (_, list) = call(&base, "projects/get_many", &[]).await;
    assert_eq!(
        list.as_array().unwrap().len(),
        2,
        "bad input stored no project"
    );
    let (_, msgs) = call(&base, "messages/get_many", &[("project_id", &id1)]).await;
    assert_eq!(user_messages(&msgs).len(), 2, "bad input stored no message");

    // A GET to a server function, or an unknown one, is a client error too.
    let (st, _) = get(&format!("{base}/api/projects/create")).await;
    assert!((400..500).contains(&st), "GET on a server fn: {st}");
    let (st, _) = call(&base, "projects/nope", &[]).await;
    assert!((400..500).contains(&st), "unknown server fn: {st}");

    // Restart on the same data: everything is still there.
    let addr = srv.addr().to_owned();
    srv.stop().unwrap();
    let srv = start(
        data.path(),
        (backend == Backend::Postgres).then_some(&db),
        Some(addr),
    );
    let (st, list) = call(&srv.base_url, "projects/get_many", &[]).await;
    assert_eq!(st, 200);
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![id2.as_str(), id1.as_str()],
        "projects survive a restart"
    );
    let (_, msgs) = call(&srv.base_url, "messages/get_many", &[("project_id", &id1)]).await;
    assert_eq!(user_messages(&msgs).len(), 2, "messages survive a restart");
}

#[tokio::test]
async fn sqlite_server_functions_and_restart() {
    server_functions_over_http(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_server_functions_and_restart() {
    server_functions_over_http(Backend::Postgres).await;
}

#[tokio::test]
async fn healthz_follows_the_database() {
    let db = TestDb::postgres().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let srv = start(data.path(), Some(&db), None);
    let (st, body) = get(&format!("{}/healthz", srv.base_url)).await;
    assert_eq!(st, 200, "{body}");
    drop(db); // the database disappears under the running server
    let (st, body) = get(&format!("{}/healthz", srv.base_url)).await;
    assert_eq!(st, 503, "{body}");
    assert!(body.contains("unavailable"), "{body}");
}

#[tokio::test]
async fn pages_render_on_the_server() {
    let data = tempfile::tempdir().unwrap();
    let srv = start(data.path(), None, None);
    let (st, html) = get(&format!("{}/", srv.base_url)).await;
    assert_eq!(st, 200);
    assert!(html.contains("Start Creating"), "home page");
    assert!(
        html.contains("/pkg/frontend.js") && html.contains("/pkg/frontend_bg.wasm"),
        "hydration scripts"
    );
    assert!(html.contains("/pkg/app.css"));
    assert!(html.contains("No projects yet"), "empty state");

    let (_, p) = call(
        &srv.base_url,
        "projects/create",
        &[("prompt", "A pomodoro <b>timer</b>")],
    )
    .await;
    let id = p["id"].as_str().unwrap();
    let (st, html) = get(&format!("{}/projects/{id}", srv.base_url)).await;
    assert_eq!(st, 200);
    assert!(
        html.contains("A pomodoro &lt;b&gt;timer&lt;/b&gt;"),
        "prompt shown, escaped: {html}"
    );
    let (st, html) = get(&format!("{}/", srv.base_url)).await;
    assert_eq!(st, 200);
    assert!(
        html.contains(p["name"].as_str().unwrap()),
        "project listed on home"
    );

    let (st, _) = get(&format!(
        "{}/projects/00000000-0000-4000-8000-000000000000",
        srv.base_url
    ))
    .await;
    assert_eq!(st, 404);
    let (st, _) = get(&format!("{}/projects/nonsense", srv.base_url)).await;
    assert_eq!(st, 400);
    let (st, _) = get(&format!("{}/no/such/page", srv.base_url)).await;
    assert_eq!(st, 404);
    let (st, svg) = get(&format!("{}/favicon.svg", srv.base_url)).await;
    assert_eq!(st, 200);
    assert!(svg.contains("<svg"));
}

#[test]
fn help_names_every_setting() {
    let out = std::process::Command::new(crate::support::binary())
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for var in ["LEPTOS_SITE_ADDR", "DATABASE_URL", "CODEFLUX_DATA_DIR"] {
        assert!(text.contains(var), "--help should name {var}:\n{text}");
    }
}

#[tokio::test]
async fn seed_fills_sample_projects() {
    let data = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(crate::support::binary())
        .arg("seed")
        .env("CODEFLUX_DATA_DIR", data.path())
        .env_remove("DATABASE_URL")
        .current_dir(crate::support::root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("seeded 2 sample projects"));
    let srv = start(data.path(), None, None);
    let (_, list) = call(&srv.base_url, "projects/get_many", &[]).await;
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    let id = list[0]["id"].as_str().unwrap();
    let (_, msgs) = call(&srv.base_url, "messages/get_many", &[("project_id", id)]).await;
    let msgs = msgs.as_array().unwrap();
    assert_eq!(msgs.len(), 4, "prompt, result, follow-up, error");
    assert!(
        msgs[1]["fragment"]["files"]
            .as_object()
            .is_some_and(|f| !f.is_empty())
    );
    assert_eq!(msgs[3]["type"], "ERROR");
}
