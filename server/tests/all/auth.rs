//! Accounts and web security over real HTTP, on SQLite and PostgreSQL: sign-up rules, sign-in
//! that never reveals accounts and is rate-limited, sessions in the database, API tokens,
//! ownership, cross-site refusal, the Host allowlist, accounts off only on loopback, Secure
//! cookies behind https.

use std::time::Duration;

use codeflux_test_support::scripted_llm::{ScriptedLlm, Turn};
use codeflux_test_support::{Backend, ServerOptions, ServerProcess, TestDb};
use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::support::{binary, http, root};

fn start(
    data: &std::path::Path,
    db: Option<&TestDb>,
    env: &[(&str, &str)],
    addr: Option<String>,
) -> ServerProcess {
    let mut e: Vec<(String, String)> = vec![("CODEFLUX_AUTH".into(), "on".into())];
    if let Some(db) = db {
        e.push(("DATABASE_URL".into(), db.url.clone()));
    }
    e.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    ServerProcess::start(ServerOptions {
        binary: binary(),
        workdir: root(),
        data_dir: data.to_path_buf(),
        env: e,
        addr,
    })
    .expect("server starts")
}

/// One user agent: a session cookie and/or a bearer token.
#[derive(Clone, Default)]
struct Agent {
    base: String,
    cookie: Option<String>,
    bearer: Option<String>,
}

struct Answer {
    status: u16,
    headers: HeaderMap,
    json: Value,
}

impl Agent {
    fn new(base: &str) -> Agent {
        Agent {
            base: base.to_owned(),
            ..Agent::default()
        }
    }

    async fn post(&self, name: &str, form: &[(&str, &str)], headers: &[(&str, &str)]) -> Answer {
        let mut req = http().post(format!("{}/api/{name}", self.base)).form(form);
        if let Some(c) = &self.cookie {
            req = req.header("cookie", c);
        }
        if let Some(t) = &self.bearer {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let text = res.text().await.unwrap();
        Answer {
            status,
            headers,
            json: serde_json::from_str(&text).unwrap_or(Value::String(text)),
        }
    }

    async fn api(&mut self, name: &str, form: &[(&str, &str)]) -> Answer {
        let a = self.post(name, form, &[]).await;
        if let Some(c) = session_cookie(&a.headers) {
            self.cookie = Some(c);
        }
        a
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> (u16, HeaderMap, String) {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let _ = http(); // installs the TLS provider reqwest needs
        let mut req = client.get(format!("{}{path}", self.base));
        if let Some(c) = &self.cookie {
            req = req.header("cookie", c);
        }
        if let Some(t) = &self.bearer {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = req.send().await.unwrap();
        let (st, h) = (res.status().as_u16(), res.headers().clone());
        // Event streams never end: read the first chunk only.
        if h.get("content-type").is_some_and(|c| {
            c.to_str()
                .unwrap_or_default()
                .starts_with("text/event-stream")
        }) {
            return (st, h, String::new());
        }
        (st, h, res.text().await.unwrap_or_default())
    }
}

fn set_cookies(h: &HeaderMap) -> Vec<String> {
    h.get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect()
}

fn session_cookie(h: &HeaderMap) -> Option<String> {
    set_cookies(h)
        .into_iter()
        .find(|c| c.starts_with("codeflux_session=") && !c.contains("Max-Age=0"))
        .map(|c| c.split(';').next().unwrap_or_default().to_owned())
}

fn kind(a: &Answer) -> &str {
    a.json["kind"].as_str().unwrap_or_default()
}

async fn accounts_sessions_tokens_ownership(backend: Backend) {
    let db = TestDb::new(backend).await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let llm = ScriptedLlm::start().await.unwrap();
    let model = [
        ("LLM_BASE_URL", llm.base_url.as_str()),
        ("LLM_API_KEY", "sk-auth"),
        ("LLM_MODEL", "scripted"),
    ];
    let srv = start(data.path(), Some(&db), &model, None);
    let base = srv.base_url.clone();
    let mut anon = Agent::new(&base);

    // Signed out: the API refuses, pages send to sign-in, the sign-in page is there.
    assert_eq!(anon.api("projects/get_many", &[]).await.status, 401);
    assert_eq!(
        anon.api("projects/create", &[("prompt", "x")]).await.status,
        401
    );
    let (st, h, _) = anon
        .get("/projects/abc?x=1", &[("accept", "text/html")])
        .await;
    assert_eq!(st, 303);
    assert_eq!(h["location"], "/sign-in?next=/projects/abc%3Fx%3D1");
    let (st, _, page) = anon.get("/sign-in", &[]).await;
    assert!(st == 200 && page.contains("type=\"password\""), "{st}");
    let (st, _, _) = anon.get("/favicon.svg", &[]).await;
    assert_eq!(st, 200, "static files need no account");

    // The first account is the admin; short passwords are refused.
    let a = Agent::new(&base)
        .api(
            "auth/sign_up",
            &[("email", "alice@test.dev"), ("password", "short7!")],
        )
        .await;
    assert_eq!((a.status, kind(&a)), (400, "bad_input"), "{}", a.json);
    assert!(set_cookies(&a.headers).is_empty());
    let mut alice = Agent::new(&base);
    let a = alice
        .api(
            "auth/sign_up",
            &[
                ("email", "Alice@Test.dev"),
                ("password", "alice-password-1"),
            ],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.json);
    let cookie = set_cookies(&a.headers).join(" | ");
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Lax")
            && !cookie.contains("Secure"),
        "{cookie}"
    );
    let me = alice.api("auth/me", &[]).await.json;
    assert_eq!(
        (me["email"].as_str(), me["is_admin"].as_bool()),
        (Some("alice@test.dev"), Some(true))
    );

    // Invite (default): without one, or with a made-up one, no account.
    let mut bob = Agent::new(&base);
    let a = bob
        .api(
            "auth/sign_up",
            &[("email", "bob@test.dev"), ("password", "bob-password-1")],
        )
        .await;
    assert_eq!((a.status, kind(&a)), (403, "forbidden"));
    let a = bob
        .api(
            "auth/sign_up",
            &[
                ("email", "bob@test.dev"),
                ("password", "bob-password-1"),
                ("invite", "0123456789abcdef0123456789abcdef"),
            ],
        )
        .await;
    assert_eq!(a.status, 403);
    assert!(bob.cookie.is_none());
    // Members cannot invite; the admin can, once per invite.
    let inv = alice
        .api("auth/invites/create", &[("email", "bob@test.dev")])
        .await;
    assert_eq!(inv.status, 200, "{}", inv.json);
    let code = inv.json["code"].as_str().unwrap().to_owned();
    assert!(
        inv.json["url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/sign-up?invite={code}"))
    );
    let a = bob
        .api(
            "auth/sign_up",
            &[
                ("email", "bob@test.dev"),
                ("password", "bob-password-1"),
                ("invite", &code),
            ],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.json);
    assert_eq!(a.json["is_admin"], false);
    let a = Agent::new(&base)
        .api(
            "auth/sign_up",
            &[
                ("email", "carol@test.dev"),
                ("password", "carol-password"),
                ("invite", &code),
            ],
        )
        .await;
    assert_eq!(a.status, 403, "an invite works once");
    let a = bob.api("auth/invites/create", &[]).await;
    assert_eq!((a.status, kind(&a)), (403, "forbidden"));

    // Sign-in: a wrong password and an unknown email answer alike.
    let w = Agent::new(&base)
        .api(
            "auth/sign_in",
            &[("email", "alice@test.dev"), ("password", "wrong-password")],
        )
        .await;
    let u = Agent::new(&base)
        .api(
            "auth/sign_in",
            &[("email", "nobody@test.dev"), ("password", "wrong-password")],
        )
        .await;
    assert_eq!((w.status, &w.json), (u.status, &u.json));
    assert_eq!(w.status, 401);
    assert!(set_cookies(&w.headers).is_empty() && set_cookies(&u.headers).is_empty());
    let mut alice2 = Agent::new(&base);
    let a = alice2
        .api(
            "auth/sign_in",
            &[
                ("email", "alice@test.dev"),
                ("password", "alice-password-1"),
            ],
        )
        .await;
    assert_eq!(a.status, 200);

    // Ownership: each sees and reaches only their own projects.
    llm.push([Turn::text("<task_summary>Alice's.</task_summary>")]);
    let p = alice
        .api("projects/create", &[("prompt", "alice's app")])
        .await;
    assert_eq!(p.status, 200, "{}", p.json);
    let pid = p.json["id"].as_str().unwrap().to_owned();
    wait_for_version(&alice, &pid).await;
    let msgs = alice
        .api("messages/get_many", &[("project_id", &pid)])
        .await
        .json;
    let frag = msgs
        .as_array()
        .unwrap()
        .iter()
        .find_map(|m| m["fragment"]["id"].as_str())
        .unwrap()
        .to_owned();
    llm.push([Turn::text("<task_summary>Bob's.</task_summary>")]);
    let b = bob.api("projects/create", &[("prompt", "bob's app")]).await;
    let bid = b.json["id"].as_str().unwrap().to_owned();
    let list = |v: Value| {
        v.as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        list(alice.api("projects/get_many", &[]).await.json),
        vec![pid.clone()]
    );
    assert_eq!(
        list(bob.api("projects/get_many", &[]).await.json),
        vec![bid.clone()]
    );
    for (name, form) in [
        ("projects/get", vec![("id", pid.as_str())]),
        ("projects/view", vec![("id", pid.as_str())]),
        ("projects/delete", vec![("id", pid.as_str())]),
        ("messages/get_many", vec![("project_id", pid.as_str())]),
        (
            "messages/create",
            vec![("project_id", pid.as_str()), ("content", "hi")],
        ),
        ("runs/active", vec![("project_id", pid.as_str())]),
        ("runs/cancel", vec![("project_id", pid.as_str())]),
        (
            "fragments/file",
            vec![("fragment_id", frag.as_str()), ("path", "package.json")],
        ),
        (
            "preview/show",
            vec![("project_id", pid.as_str()), ("fragment_id", frag.as_str())],
        ),
    ] {
        let a = bob.api(name, &form).await;
        assert_eq!(a.status, 404, "bob on {name}: {}", a.json);
    }
    assert_eq!(
        bob.get(&format!("/api/projects/{pid}/events"), &[]).await.0,
        404
    );
    assert_eq!(
        bob.get(&format!("/api/fragments/{frag}/zip"), &[]).await.0,
        404
    );
    assert_eq!(
        alice
            .get(&format!("/api/fragments/{frag}/zip"), &[])
            .await
            .0,
        200
    );
    assert_eq!(
        alice.api("projects/get", &[("id", &bid)]).await.status,
        404,
        "the admin too"
    );
    assert_eq!(
        alice
            .api("messages/get_many", &[("project_id", &pid)])
            .await
            .json
            .as_array()
            .unwrap()
            .len(),
        2,
        "bob's message stored nothing"
    );

    // API tokens: shown once, stored hashed, work everywhere, revocable.
    let t = alice.api("auth/tokens/create", &[("name", "ci")]).await;
    assert_eq!(t.status, 200, "{}", t.json);
    let token = t.json["token"].as_str().unwrap().to_owned();
    let tid = t.json["id"].as_str().unwrap().to_owned();
    let scripted = Agent {
        bearer: Some(token.clone()),
        ..Agent::new(&base)
    };
    assert_eq!(
        list(scripted.post("projects/get_many", &[], &[]).await.json),
        vec![pid.clone()]
    );
    let (st, h, _) = scripted
        .get(&format!("/api/projects/{pid}/events"), &[])
        .await;
    assert_eq!(st, 200, "the event stream with a token");
    assert!(
        h["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let listed = alice.api("auth/tokens/list", &[]).await.json;
    assert!(
        !listed.to_string().contains(&token),
        "the secret is never listed"
    );
    assert_eq!(
        alice
            .api("auth/tokens/revoke", &[("id", &tid)])
            .await
            .status,
        200
    );
    assert_eq!(
        scripted.post("projects/get_many", &[], &[]).await.status,
        401
    );
    assert_eq!(
        scripted
            .get(&format!("/api/projects/{pid}/events"), &[])
            .await
            .0,
        401
    );
    let bogus = Agent {
        bearer: Some("cf_bogus0123456789".into()),
        ..Agent::new(&base)
    };
    assert_eq!(bogus.post("projects/get_many", &[], &[]).await.status, 401);

    // Cross-site requests with a valid session: refused, nothing stored.
    let origin = format!("http://{}", srv.addr());
    let preview = format!(
        "http://{pid}.preview.localhost:{}",
        srv.addr().rsplit(':').next().unwrap()
    );
    for hdrs in [
        vec![("origin", "http://evil.example")],
        vec![("origin", preview.as_str())],
        vec![("origin", "null")],
        vec![("sec-fetch-site", "cross-site")],
        vec![("sec-fetch-site", "same-site")],
    ] {
        for (name, form) in [
            ("projects/create", vec![("prompt", "cross-site")]),
            (
                "messages/create",
                vec![("project_id", pid.as_str()), ("content", "cross-site")],
            ),
            ("runs/cancel", vec![("project_id", pid.as_str())]),
            ("auth/sign_out", vec![]),
        ] {
            let a = alice.post(name, &form, &hdrs).await;
            assert_eq!(
                (a.status, kind(&a)),
                (403, "forbidden"),
                "{name} with {hdrs:?}: {}",
                a.json
            );
        }
    }
    assert_eq!(
        list(alice.api("projects/get_many", &[]).await.json).len(),
        1
    );
    assert_eq!(
        alice.api("auth/me", &[]).await.status,
        200,
        "the cross-site sign-out did nothing"
    );
    llm.push([Turn::text("<task_summary>ok</task_summary>")]);
    let same = alice
        .post(
            "projects/create",
            &[("prompt", "same origin")],
            &[("origin", &origin), ("sec-fetch-site", "same-origin")],
        )
        .await;
    assert_eq!(same.status, 200, "{}", same.json);
    let a = Agent::new(&base)
        .post(
            "auth/sign_in",
            &[
                ("email", "alice@test.dev"),
                ("password", "alice-password-1"),
            ],
            &[("origin", "http://evil.example")],
        )
        .await;
    assert!(
        a.status == 403 && set_cookies(&a.headers).is_empty(),
        "cross-site sign-in"
    );

    // A foreign Host (DNS rebinding) gets no app, whatever the credentials.
    let (st, _, body) = alice.get("/", &[("host", "evil.example")]).await;
    assert!(st == 421 && !body.contains("CodeFlux"), "{st} {body}");
    let a = alice
        .post("projects/get_many", &[], &[("host", "evil.example:80")])
        .await;
    assert_eq!(a.status, 421);
    assert_eq!(alice.get("/", &[("host", "localhost")]).await.0, 200);

    // Sessions survive a restart (they are in the database); sign-out ends one; open sign-up.
    let addr = srv.addr().to_owned();
    srv.stop().unwrap();
    let srv = start(
        data.path(),
        Some(&db),
        &[("CODEFLUX_SIGNUP", "open")],
        Some(addr),
    );
    assert_eq!(alice.api("auth/me", &[]).await.status, 200);
    let old = alice2.cookie.clone();
    assert_eq!(alice2.api("auth/sign_out", &[]).await.status, 200);
    let stale = Agent {
        cookie: old,
        ..Agent::new(&base)
    };
    assert_eq!(stale.post("projects/get_many", &[], &[]).await.status, 401);
    let mut dave = Agent::new(&base);
    assert_eq!(
        dave.api(
            "auth/sign_up",
            &[("email", "dave@test.dev"), ("password", "dave-password")]
        )
        .await
        .status,
        200
    );
    // Sign out everywhere ends every session of the account.
    let mut dave2 = Agent::new(&base);
    dave2
        .api(
            "auth/sign_in",
            &[("email", "dave@test.dev"), ("password", "dave-password")],
        )
        .await;
    assert_eq!(
        dave.api("auth/sign_out", &[("everywhere", "true")])
            .await
            .json["sessions"],
        2
    );
    assert_eq!(dave2.api("auth/me", &[]).await.status, 401);
    let addr = srv.addr().to_owned();
    srv.stop().unwrap();

    // Closed sign-up; then the rate limit on wrong passwords.
    let srv = start(
        data.path(),
        Some(&db),
        &[("CODEFLUX_SIGNUP", "closed")],
        Some(addr),
    );
    let a = Agent::new(&base)
        .api(
            "auth/sign_up",
            &[("email", "erin@test.dev"), ("password", "erin-password")],
        )
        .await;
    assert_eq!((a.status, kind(&a)), (403, "forbidden"));
    let mut limited = None;
    for i in 0..10 {
        let a = Agent::new(&base)
            .api(
                "auth/sign_in",
                &[
                    ("email", "bob@test.dev"),
                    ("password", &format!("wrong-{i}")),
                ],
            )
            .await;
        if a.status == 429 {
            limited = Some((i, a.headers.get("retry-after").cloned()));
            break;
        }
        assert_eq!(a.status, 401);
    }
    let (tries, retry) = limited.expect("429 within 10 wrong passwords");
    assert_eq!(tries, 4, "the fifth failure locks the account");
    assert!(retry.is_some_and(|v| v.to_str().unwrap().parse::<u64>().unwrap() >= 1));
    let a = Agent::new(&base)
        .api(
            "auth/sign_in",
            &[("email", "bob@test.dev"), ("password", "bob-password-1")],
        )
        .await;
    assert_eq!(a.status, 429, "locked even with the right password");
    drop(srv);
}

async fn wait_for_version(agent: &Agent, pid: &str) {
    let t0 = std::time::Instant::now();
    loop {
        let a = agent
            .post("messages/get_many", &[("project_id", pid)], &[])
            .await;
        if a.json
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["fragment"]["id"].is_string()))
        {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no version: {}",
            a.json
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn accounts_on_sqlite() {
    accounts_sessions_tokens_ownership(Backend::Sqlite).await;
}

#[tokio::test]
async fn accounts_on_postgres() {
    accounts_sessions_tokens_ownership(Backend::Postgres).await;
}

#[tokio::test]
async fn secrets_are_stored_hashed_and_old_projects_go_to_the_first_admin() {
    let data = tempfile::tempdir().unwrap();
    // A project made with accounts off...
    let srv = ServerProcess::start(ServerOptions {
        binary: binary(),
        workdir: root(),
        data_dir: data.path().to_path_buf(),
        env: vec![],
        addr: None,
    })
    .unwrap();
    let a = Agent::new(&srv.base_url)
        .post(
            "projects/create",
            &[("prompt", "from before accounts")],
            &[],
        )
        .await;
    assert_eq!(a.status, 200);
    let old = a.json["id"].as_str().unwrap().to_owned();
    let addr = srv.addr().to_owned();
    srv.stop().unwrap();
    // ...belongs to the first admin once accounts are on.
    let srv = start(data.path(), None, &[], Some(addr));
    let mut admin = Agent::new(&srv.base_url);
    admin
        .api(
            "auth/sign_up",
            &[
                ("email", "root@test.dev"),
                ("password", "Secret-password-9"),
            ],
        )
        .await;
    let list = admin.api("projects/get_many", &[]).await.json;
    assert!(list.to_string().contains(&old), "{list}");
    let token = admin.api("auth/tokens/create", &[("name", "x")]).await.json["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let cookie = admin.cookie.clone().unwrap();
    srv.stop().unwrap();
    // The database file holds neither the password, nor the token, nor the session token.
    let mut all = Vec::new();
    for f in ["codeflux.db", "codeflux.db-wal"] {
        if let Ok(b) = std::fs::read(data.path().join(f)) {
            all.extend(b);
        }
    }
    let text = String::from_utf8_lossy(&all);
    assert!(text.contains("root@test.dev"));
    assert!(text.contains("$argon2id$"), "argon2id hashes");
    let session = cookie.split('=').nth(1).unwrap();
    for secret in ["Secret-password-9", token.as_str(), session] {
        assert!(!text.contains(secret), "a secret in plain text");
    }
}

#[tokio::test]
async fn accounts_off_only_on_loopback_and_still_guarded() {
    // Refused on every address.
    let data = tempfile::tempdir().unwrap();
    let r = ServerProcess::start(ServerOptions {
        binary: binary(),
        workdir: root(),
        data_dir: data.path().to_path_buf(),
        env: vec![("CODEFLUX_AUTH".into(), "off".into())],
        addr: Some("0.0.0.0:0".into()),
    });
    let err = r.err().expect("refuses to start").to_string();
    assert!(
        err.contains("CODEFLUX_AUTH=off") && err.contains("loopback"),
        "{err}"
    );

    // On loopback: no sign-in, but the cross-site and Host checks hold.
    let srv = ServerProcess::start(ServerOptions {
        binary: binary(),
        workdir: root(),
        data_dir: data.path().to_path_buf(),
        env: vec![],
        addr: None,
    })
    .unwrap();
    let local = Agent::new(&srv.base_url);
    assert_eq!(local.post("projects/get_many", &[], &[]).await.status, 200);
    let me = local.post("auth/me", &[], &[]).await.json;
    assert_eq!(me["auth"], false);
    for hdrs in [
        vec![("origin", "http://evil.example")],
        vec![("origin", "null")],
        vec![("sec-fetch-site", "cross-site")],
    ] {
        let a = local
            .post("projects/create", &[("prompt", "x")], &hdrs)
            .await;
        assert_eq!((a.status, kind(&a)), (403, "forbidden"));
    }
    assert_eq!(
        local.post("projects/get_many", &[], &[]).await.json,
        Value::Array(vec![])
    );
    assert_eq!(local.get("/", &[("host", "evil.example")]).await.0, 421);
}

#[tokio::test]
async fn an_https_public_url_makes_cookies_secure_and_is_the_only_named_host() {
    let data = tempfile::tempdir().unwrap();
    let srv = start(
        data.path(),
        None,
        &[("CODEFLUX_PUBLIC_URL", "https://codeflux.test:8443")],
        None,
    );
    let mut a = Agent::new(&srv.base_url);
    let r = a
        .api(
            "auth/sign_up",
            &[("email", "x@test.dev"), ("password", "password-123")],
        )
        .await;
    assert!(
        set_cookies(&r.headers)
            .iter()
            .any(|c| c.contains("; Secure")),
        "{:?}",
        set_cookies(&r.headers)
    );
    let ok = a
        .post(
            "projects/get_many",
            &[],
            &[
                ("host", "codeflux.test:8443"),
                ("origin", "https://codeflux.test:8443"),
            ],
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.json);
    let bad = a
        .post(
            "projects/get_many",
            &[],
            &[("origin", "http://codeflux.test:8443")],
        )
        .await;
    assert_eq!(bad.status, 403);
    let invite = a.api("auth/invites/create", &[]).await.json;
    assert!(
        invite["url"]
            .as_str()
            .unwrap()
            .starts_with("https://codeflux.test:8443/sign-up?invite=")
    );
    let wrong = ServerProcess::start(ServerOptions {
        binary: binary(),
        workdir: root(),
        data_dir: data.path().to_path_buf(),
        env: vec![
            ("CODEFLUX_AUTH".into(), "on".into()),
            ("CODEFLUX_PUBLIC_URL".into(), "ftp://x/path".into()),
        ],
        addr: None,
    });
    assert!(
        wrong
            .err()
            .unwrap()
            .to_string()
            .contains("CODEFLUX_PUBLIC_URL")
    );
}
