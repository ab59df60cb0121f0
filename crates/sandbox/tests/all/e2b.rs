//! The E2B clients (REST API and envd) against the loopback double that speaks E2B's wire
//! protocol: create with the API key, files and commands through envd with the sandbox's access
//! token (Connect streaming), timeouts, kill, and each refusal told clearly; then the E2B
//! provider through the same `SandboxProvider` and `Sandbox` traits as the local one.

use std::time::Duration;

use codeflux_protocol::{CheckStatus, Template};
use codeflux_sandbox::e2b::E2bConfig;
use codeflux_sandbox::e2b::api::Api;
use codeflux_sandbox::e2b::envd::Envd;
use codeflux_sandbox::{FileError, PreviewState, RunOptions, SandboxError, SandboxProvider};
use codeflux_test_support::e2b_double::{DoubleTemplate, E2bDouble};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

#[tokio::test]
async fn the_api_and_envd_speak_e2bs_protocol() {
    let double = E2bDouble::start().await.unwrap();
    let http = codeflux_sandbox::e2b::http_client().unwrap();
    let api = Api::new(http.clone(), &double.base_url, &double.api_key);

    // Refusals say why.
    let bad = Api::new(http.clone(), &double.base_url, "e2b_wrong");
    let e = bad
        .create("codeflux-nextjs", Duration::from_secs(300), &[])
        .await
        .unwrap_err();
    assert!(
        e.message.contains("401") && e.message.contains("E2B_API_KEY"),
        "{e}"
    );
    let e = api
        .create("missing", Duration::from_secs(300), &[])
        .await
        .unwrap_err();
    assert!(
        e.message.contains("404") && e.message.contains("template"),
        "{e}"
    );

    let sb = api
        .create(
            "codeflux-nextjs",
            Duration::from_secs(300),
            &[("project", "p1")],
        )
        .await
        .unwrap();
    assert_eq!(
        double.template(&sb.sandbox_id).as_deref(),
        Some("codeflux-nextjs")
    );
    let token = sb.envd_access_token.clone();
    assert!(token.is_some());
    let envd = Envd::new(http.clone(), &double.base_url, &sb.sandbox_id, token);

    // Files.
    envd.write("/home/user/src/App.tsx", b"export const a = 1; // \xc3\xa9")
        .await
        .unwrap();
    let home = double.home(&sb.sandbox_id).unwrap();
    assert!(home.join("src/App.tsx").exists());
    let got = envd
        .read("/home/user/src/App.tsx", 1 << 20)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(String::from_utf8(got).unwrap(), "export const a = 1; // é");
    assert_eq!(
        envd.read("/home/user/nope.txt", 1 << 20).await.unwrap(),
        None
    );
    envd.write("/home/user/a b&c.txt", b"x").await.unwrap();
    assert!(home.join("a b&c.txt").exists(), "the path is encoded");
    let wrong = Envd::new(
        http.clone(),
        &double.base_url,
        &sb.sandbox_id,
        Some("nope".into()),
    );
    let e = wrong
        .read("/home/user/src/App.tsx", 1 << 20)
        .await
        .unwrap_err();
    assert_eq!(e.status, Some(401), "{e}");

    // A command: output streamed and kept, its exit code (a non-zero one is sent, zero is
    // left out of the JSON and read as 0).
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let done = envd
        .run(
            "echo out-line; echo err-line >&2; cat src/App.tsx; exit 3",
            "/home/user",
            Duration::from_secs(20),
            65536,
            Some(tx),
        )
        .await
        .unwrap();
    assert_eq!(done.exit_code, 3);
    assert!(!done.timed_out);
    assert!(
        done.output.contains("out-line")
            && done.output.contains("err-line")
            && done.output.contains("const a"),
        "{}",
        done.output
    );
    let mut streamed = String::new();
    while let Ok(s) = rx.try_recv() {
        streamed.push_str(&s);
    }
    assert!(streamed.contains("out-line"), "{streamed}");
    let ok = envd
        .run("true", "/home/user", Duration::from_secs(20), 1024, None)
        .await
        .unwrap();
    assert_eq!(ok.exit_code, 0);
    // Output past the budget keeps its head and tail.
    let big = envd
        .run(
            "seq 1 20000",
            "/home/user",
            Duration::from_secs(20),
            2048,
            None,
        )
        .await
        .unwrap();
    assert!(
        big.output.starts_with("1\n2\n")
            && big.output.ends_with("20000\n")
            && big.output.len() < 2100,
        "{}",
        big.output.len()
    );
    // A missing working directory is envd's invalid_argument, told.
    let e = envd
        .run(
            "true",
            "/home/user/none",
            Duration::from_secs(5),
            1024,
            None,
        )
        .await
        .unwrap_err();
    assert!(e.message.contains("invalid_argument"), "{e}");
    // Past its time a command is killed and says so.
    let t0 = std::time::Instant::now();
    let slow = envd
        .run("sleep 60", "/home/user", Duration::from_secs(1), 1024, None)
        .await
        .unwrap();
    assert!(slow.timed_out && t0.elapsed() < Duration::from_secs(20));

    // Its life: extended, killed, gone.
    assert!(
        api.set_timeout(&sb.sandbox_id, Duration::from_secs(600))
            .await
            .unwrap()
    );
    assert!(api.kill(&sb.sandbox_id).await.unwrap());
    assert!(!api.kill(&sb.sandbox_id).await.unwrap());
    assert!(
        !api.set_timeout(&sb.sandbox_id, Duration::from_secs(600))
            .await
            .unwrap()
    );
    let e = envd
        .read("/home/user/src/App.tsx", 1 << 20)
        .await
        .unwrap_err();
    assert_eq!(e.status, Some(502), "{e}");
    assert!(double.sandboxes().is_empty());
}

/// The dev server of the double's template: serves the sandbox's home on $PORT.
const SERVE: &str = "exec python3 -m http.server \"$PORT\" --bind 127.0.0.1";

async fn provider_on(
    double: &E2bDouble,
    max: usize,
    idle: Duration,
) -> codeflux_sandbox::e2b::E2bProvider {
    let mut cfg = E2bConfig::new(
        &double.api_key,
        "e2b.test",
        "http://{id}.preview.localhost:3000/",
    );
    cfg.api_url = double.base_url.clone();
    cfg.sandbox_url = Some(double.base_url.clone());
    cfg.vite_react.start_cmd = SERVE.into();
    cfg.max_sandboxes = max;
    cfg.idle = idle;
    codeflux_sandbox::e2b::E2bProvider::new(cfg).unwrap()
}

async fn double_with_vite() -> E2bDouble {
    E2bDouble::start_with(vec![(
        "codeflux-vite-react".into(),
        DoubleTemplate {
            seed: Some(crate::templates_dir().join("vite-react")),
            start_cmd: Some(SERVE.into()),
        },
    )])
    .await
    .unwrap()
}

async fn wait_state(
    p: &dyn SandboxProvider,
    id: Uuid,
    want: impl Fn(&PreviewState) -> bool,
) -> PreviewState {
    let t0 = std::time::Instant::now();
    loop {
        let s = p.preview_state(id);
        if want(&s) {
            return s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(40),
            "preview state stuck at {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// GET `path` over a preview connection, as the proxy sends it (the upstream's Host and
/// routing headers).
async fn preview_get(p: &dyn SandboxProvider, id: Uuid, path: &str) -> String {
    let mut c = p.connect_preview(id).await.unwrap();
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
        c.upstream_host().unwrap()
    );
    for (k, v) in c.upstream_headers() {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    c.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    c.read_to_end(&mut out).await.unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn a_project_runs_on_e2b_through_the_same_provider() {
    let double = double_with_vite().await;
    let p = provider_on(&double, 1, Duration::from_secs(600)).await;
    let id = Uuid::new_v4();
    assert_eq!(p.preview_state(id), PreviewState::Stopped);

    // A new project starts from the template (E2B's snapshot of it).
    let sb = p.open(id, Template::ViteReact, None).await.unwrap();
    let sid = double.sandboxes().pop().unwrap();
    assert_eq!(
        double.template(&sid).as_deref(),
        Some("codeflux-vite-react")
    );
    // Created private (ports only with the traffic token, the Host masked for the dev
    // server), private ranges denied, E2B's time to live past our idle limit, and nothing of
    // ours in its environment.
    let body = double.created_with(&sid).unwrap();
    assert_eq!(body["network"]["allowPublicTraffic"], false, "{body}");
    assert_eq!(body["network"]["maskRequestHost"], "localhost:${PORT}");
    assert!(
        body["network"]["denyOut"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("169.254.0.0/16"))
    );
    assert!(body.get("envVars").is_none(), "{body}");
    assert_eq!(body["timeout"], 720);
    assert!(double.ttl_left(&sid).unwrap() > Duration::from_secs(700));
    let anon = reqwest::Client::new()
        .get(format!("{}/", double.base_url))
        .header("e2b-sandbox-id", &sid)
        .header("e2b-sandbox-port", "5173")
        .send()
        .await
        .unwrap();
    assert_eq!(
        anon.status().as_u16(),
        403,
        "a port without the traffic token"
    );
    let files = sb.list_files().await.unwrap();
    assert!(
        files.contains(&"src/App.tsx".to_owned()) && files.contains(&"package.json".to_owned()),
        "{files:?}"
    );
    assert_eq!(p.live_sandboxes(), 1);

    // Files: written under /home/user, read back; bad paths refused before E2B is asked.
    sb.write_file("src/New.tsx", "export const n = 'NEW-MARKER';")
        .await
        .unwrap();
    assert!(double.home(&sid).unwrap().join("src/New.tsx").exists());
    assert!(
        sb.read_file("src/New.tsx")
            .await
            .unwrap()
            .contains("NEW-MARKER")
    );
    let e = sb.read_file("../etc/passwd").await.unwrap_err();
    assert!(
        matches!(e, SandboxError::File(FileError::InvalidPath { .. })),
        "{e}"
    );
    let e = sb.read_file("src/none.ts").await.unwrap_err();
    assert!(
        matches!(e, SandboxError::File(FileError::NotFound(_))),
        "{e}"
    );
    let e = sb.read_file("src").await.unwrap_err();
    assert!(
        matches!(e, SandboxError::File(FileError::NotRegular { .. })),
        "{e}"
    );

    // A huge file made by a command is refused, not loaded (nor snapshotted).
    sb.run(
        "head -c 3000000 /dev/zero | tr '\\0' a > big.txt",
        &RunOptions::default(),
        None,
    )
    .await
    .unwrap();
    let e = sb.read_file("big.txt").await.unwrap_err();
    assert!(
        matches!(e, SandboxError::File(FileError::TooLarge { .. })),
        "{e}"
    );

    // Commands: output, exit codes, time limits.
    let r = sb
        .run("echo hello-e2b; exit 2", &RunOptions::default(), None)
        .await
        .unwrap();
    assert_eq!(r.exit_code, Some(2));
    assert!(r.output.contains("hello-e2b"));
    let r = sb
        .run(
            "sleep 30",
            &RunOptions {
                timeout: Duration::from_secs(1),
                output_cap: 1024,
            },
            None,
        )
        .await
        .unwrap();
    assert!(r.timed_out && r.exit_code.is_none());

    // A snapshot holds the sources, not installed packages.
    sb.run(
        "mkdir -p node_modules/x && echo x > node_modules/x/i.js",
        &RunOptions::default(),
        None,
    )
    .await
    .unwrap();
    let snap = sb.snapshot().await.unwrap();
    assert!(snap["src/New.tsx"].contains("NEW-MARKER"));
    assert!(!snap.keys().any(|k| k.starts_with("node_modules")));
    assert!(!snap.contains_key("big.txt"));

    // The preview: the template's dev server, through E2B's edge.
    wait_state(&p, id, |s| *s == PreviewState::Ready).await;
    let page = preview_get(&p, id, "/src/New.tsx").await;
    assert!(
        page.starts_with("HTTP/1.0 200") || page.starts_with("HTTP/1.1 200"),
        "{page}"
    );
    assert!(page.contains("NEW-MARKER"), "{page}");

    // A version from the server's records: the sources become exactly those (the template's
    // other files and a planted link go; packages stay).
    sb.run("ln -s / src/root", &RunOptions::default(), None)
        .await
        .unwrap();
    let mut version = std::collections::BTreeMap::new();
    version.insert("index.html".to_owned(), "<p>VERSION-TWO</p>".to_owned());
    version.insert("src/main.tsx".to_owned(), "console.log(2)".to_owned());
    p.show_files(id, Template::ViteReact, &version)
        .await
        .unwrap();
    assert_eq!(
        sb.list_files().await.unwrap(),
        vec!["index.html", "src/main.tsx"]
    );
    assert!(!double.home(&sid).unwrap().join("src/root").exists());
    assert!(
        double
            .home(&sid)
            .unwrap()
            .join("node_modules/x/i.js")
            .exists()
    );

    // The check: the project's type check inside the sandbox, the dev server's answer.
    sb.write_file(
        "package.json",
        r#"{"scripts": {"typecheck": "echo 'src/App.tsx(2,9): error TS2322: Type number is not assignable to type string.'; exit 2"}}"#,
    )
    .await
    .unwrap();
    let report = sb.check().await.unwrap().unwrap();
    let names: Vec<&str> = report.items.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["type check", "dev server", "page load"]);
    assert_eq!(report.items[0].status, CheckStatus::Failed);
    assert_eq!(
        report.items[0].problems[0].file.as_deref(),
        Some("src/App.tsx")
    );
    assert_eq!(report.items[0].problems[0].line, Some(2));
    assert_eq!(report.items[1].status, CheckStatus::Passed, "{report:?}");
    assert_eq!(report.items[2].status, CheckStatus::Skipped);
    sb.write_file("package.json", r#"{"scripts": {"typecheck": "true"}}"#)
        .await
        .unwrap();
    assert!(sb.check().await.unwrap().unwrap().passed());

    // The dev server dies: it is started again with the template's start command.
    sb.run(
        "pkill -f \"http.server $PORT\" || true",
        &RunOptions::default(),
        None,
    )
    .await
    .unwrap();
    wait_state(&p, id, |s| matches!(s, PreviewState::Starting(_))).await;
    wait_state(&p, id, |s| *s == PreviewState::Ready).await;
    assert!(
        p.dev_server_log(id)
            .iter()
            .any(|l| l.contains("http.server")),
        "{:?}",
        p.dev_server_log(id)
    );
    assert!(preview_get(&p, id, "/").await.contains("VERSION-TWO"));

    // At the cap, a sandbox in use is never stopped for another project.
    let other = Uuid::new_v4();
    let e = p
        .open(other, Template::ViteReact, None)
        .await
        .err()
        .unwrap();
    assert!(matches!(e, SandboxError::Busy(_)), "{e}");
    // Unused, it makes room.
    drop(sb);
    let sb2 = p.open(other, Template::ViteReact, None).await.unwrap();
    assert_eq!(double.sandboxes().len(), 1);
    assert_eq!(p.preview_state(id), PreviewState::Stopped);
    assert!(
        double.home(&sid).is_none(),
        "the first sandbox was killed on E2B"
    );
    drop(sb2);

    // A template E2B does not have is told.
    let e = p
        .open(Uuid::new_v4(), Template::NextJs, None)
        .await
        .err()
        .unwrap();
    assert!(e.to_string().contains("template"), "{e}");

    p.stop(other).await;
    assert!(double.sandboxes().is_empty());
    assert_eq!(p.live_sandboxes(), 0);
}

#[tokio::test]
async fn an_idle_e2b_sandbox_is_killed_and_revived_from_records() {
    let double = double_with_vite().await;
    let p = provider_on(&double, 4, Duration::from_secs(2)).await;
    let id = Uuid::new_v4();
    let mut files = std::collections::BTreeMap::new();
    files.insert("index.html".to_owned(), "<p>FROM-RECORDS</p>".to_owned());
    p.start_preview(id, Template::ViteReact, Some(&files))
        .await
        .unwrap();
    wait_state(&p, id, |s| *s == PreviewState::Ready).await;
    // An open preview connection keeps it in use.
    let conn = p.connect_preview(id).await.unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(double.sandboxes().len(), 1, "in use: not idle");
    drop(conn);
    let t0 = std::time::Instant::now();
    while !double.sandboxes().is_empty() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "never stopped when idle"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(p.preview_state(id), PreviewState::Stopped);
    // Killed on E2B's side too (its time ran out): the next preview starts a new one from
    // the records.
    p.start_preview(id, Template::ViteReact, Some(&files))
        .await
        .unwrap();
    wait_state(&p, id, |s| *s == PreviewState::Ready).await;
    assert!(preview_get(&p, id, "/").await.contains("FROM-RECORDS"));

    // E2B ends it by itself (its time ran out, or it was killed elsewhere): noticed, and the
    // next preview starts a new one from the records.
    let sid = double.sandboxes().pop().unwrap();
    assert!(double.end(&sid));
    wait_state(&p, id, |s| *s == PreviewState::Stopped).await;
    assert_eq!(p.live_sandboxes(), 0);
    p.start_preview(id, Template::ViteReact, Some(&files))
        .await
        .unwrap();
    wait_state(&p, id, |s| *s == PreviewState::Ready).await;
    assert!(preview_get(&p, id, "/").await.contains("FROM-RECORDS"));
    assert_ne!(double.sandboxes().pop().unwrap(), sid);
    p.stop_all().await;
    assert!(double.sandboxes().is_empty());
}

#[tokio::test]
async fn concurrent_creates_never_pass_the_cap() {
    let double = double_with_vite().await;
    let p = provider_on(&double, 2, Duration::from_secs(600)).await;
    let opens = (0..5).map(|_| {
        let p = p.clone();
        tokio::spawn(async move { p.open(Uuid::new_v4(), Template::ViteReact, None).await })
    });
    let results = futures_util::future::join_all(opens).await;
    let (ok, busy): (Vec<_>, Vec<_>) = results
        .into_iter()
        .map(|r| r.unwrap())
        .partition(|r| r.is_ok());
    assert_eq!(ok.len(), 2);
    assert!(busy.iter().all(|r| matches!(r, Err(SandboxError::Busy(_)))));
    assert_eq!(double.sandboxes().len(), 2);
    assert_eq!(p.live_sandboxes(), 2);
    drop(ok);
    p.stop_all().await;
    assert!(double.sandboxes().is_empty());
}
