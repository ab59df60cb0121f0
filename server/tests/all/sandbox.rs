//! The sandbox through the real server: the preview through the app's port (HTTP and the HMR
//! websocket), and the escape suite, each attempt made as the agent would make it (terminal
//! commands and file tools from the scripted model).

use std::time::{Duration, Instant};

use codeflux_test_support::scripted_llm::{ScriptedLlm, Turn};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{call, call_as, http, is_end, sse_as, sse_until_end, start_with_model};

pub(crate) async fn preview_get(base: &str, pid: &str, path: &str, accept: &str) -> (u16, String) {
    let port = base.rsplit(':').next().unwrap();
    let res = http()
        .get(format!("{base}{path}"))
        .header("host", format!("{pid}.preview.localhost:{port}"))
        .header("accept", accept)
        .header("cookie", "codeflux_session=secret-app-cookie; theme=dark")
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

/// Polls until the preview serves `path` containing `needle` (at most 120 s).
pub(crate) async fn wait_preview(base: &str, pid: &str, path: &str, needle: &str) -> String {
    let t0 = Instant::now();
    loop {
        let (st, body) = preview_get(base, pid, path, "*/*").await;
        if st == 200 && body.contains(needle) {
            return body;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "preview never showed {needle}: {st} {}",
            &body[..body.len().min(300)]
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Opens Vite's HMR websocket through the server at `base` and returns what came back within
/// 15 s (the 101 answer and Vite's hello).
pub(crate) async fn hmr_hello(base: &str, pid: &str, token: &str) -> String {
    websocket_until(base, pid, token, "connected").await
}

/// Opens a websocket to the project's preview through the app's port and returns what came
/// back until `needle` arrived (at most 15 s).
pub(crate) async fn websocket_until(base: &str, pid: &str, token: &str, needle: &str) -> String {
    let addr = base.trim_start_matches("http://");
    let port = base.rsplit(':').next().unwrap().to_owned();
    let mut ws = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET /?token={token} HTTP/1.1\r\nHost: {pid}.preview.localhost:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: vite-hmr\r\n\r\n"
    );
    ws.write_all(req.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let t0 = Instant::now();
    while !String::from_utf8_lossy(&got).contains(needle) && t0.elapsed() < Duration::from_secs(15)
    {
        let mut buf = [0u8; 4096];
        match tokio::time::timeout(Duration::from_secs(15), ws.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// The token Vite's client uses for its HMR websocket, read from `/@vite/client` via `base`.
pub(crate) async fn hmr_token(base: &str, pid: &str) -> String {
    let client = preview_get(base, pid, "/@vite/client", "*/*").await.1;
    client
        .split("wsToken = \"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_default()
        .to_owned()
}

const PAGE: &str = "export default function App() {\n  return <main className=\"p-8\"><h1>PREVIEW-MARKER-ONE</h1></main>;\n}\n";

#[tokio::test]
async fn the_preview_is_served_through_the_app_port_with_hmr() {
    let llm = ScriptedLlm::start().await.unwrap();
    llm.push([
        Turn::tool(
            "createOrUpdateFiles",
            json!({"files": [{"path": "src/App.tsx", "content": PAGE}]}),
        ),
        Turn::text("<task_summary>A page.</task_summary>"),
    ]);
    let data = tempfile::tempdir().unwrap();
    let srv = start_with_model(data.path(), &llm, None);
    let (_, p) = call(&srv.base_url, "projects/create", &[("prompt", "a page")]).await;
    let pid = p["id"].as_str().unwrap().to_owned();
    sse_until_end(&srv.base_url, &pid).await;

    let module = wait_preview(&srv.base_url, &pid, "/src/App.tsx", "PREVIEW-MARKER-ONE").await;
    assert!(
        module.contains("jsx"),
        "a transformed module from Vite: {module}"
    );
    let (st, html) = preview_get(&srv.base_url, &pid, "/", "text/html").await;
    assert_eq!(st, 200);
    assert!(
        html.contains("/src/main.tsx") && html.contains("@vite/client"),
        "{html}"
    );
    let (_, body) = preview_get(&srv.base_url, &pid, "/healthz", "*/*").await;
    assert!(
        !body.contains("\"database\""),
        "the app's own routes are not reachable on a preview host: {body}"
    );
    let (_, body) = preview_get(&srv.base_url, &pid, "/api/projects/get_many", "*/*").await;
    assert!(!body.contains(&pid), "no app API on a preview host");

    // The HMR websocket through the proxy: 101, then Vite's hello.
    let token = hmr_token(&srv.base_url, &pid).await;
    let text = hmr_hello(&srv.base_url, &pid, &token).await;
    assert!(text.starts_with("HTTP/1.1 101"), "{text}");
    assert!(text.contains("\"type\":\"connected\""), "{text}");

    // An edit by a follow-up shows in the preview (the dev server reloads the module).
    llm.push([
        Turn::tool("editFile", json!({"path": "src/App.tsx", "search": "PREVIEW-MARKER-ONE", "replace": "PREVIEW-MARKER-TWO"})),
        Turn::text("<task_summary>Edited.</task_summary>"),
    ]);
    call(
        &srv.base_url,
        "messages/create",
        &[("project_id", &pid), ("content", "rename")],
    )
    .await;
    wait_preview(&srv.base_url, &pid, "/src/App.tsx", "PREVIEW-MARKER-TWO").await;

    // Unknown projects get a clear page, not the app.
    let (st, body) = preview_get(
        &srv.base_url,
        "00000000-0000-4000-8000-000000000000",
        "/",
        "text/html",
    )
    .await;
    assert_eq!(st, 404, "{body}");
}

#[tokio::test]
async fn a_stopped_preview_revives_from_the_latest_version() {
    let llm = ScriptedLlm::start().await.unwrap();
    llm.push([
        Turn::tool(
            "createOrUpdateFiles",
            json!({"files": [{"path": "src/App.tsx", "content": PAGE.replace("ONE", "REVIVED")}]}),
        ),
        Turn::text("<task_summary>A page.</task_summary>"),
    ]);
    let data = tempfile::tempdir().unwrap();
    let srv = start_with_model(data.path(), &llm, None);
    let (_, p) = call(&srv.base_url, "projects/create", &[("prompt", "a page")]).await;
    let pid = p["id"].as_str().unwrap().to_owned();
    sse_until_end(&srv.base_url, &pid).await;
    let addr = srv.addr().to_owned();
    srv.stop().unwrap();
    // The project's disk is lost too: the preview comes back from the stored fragment.
    std::fs::remove_file(data.path().join("sandboxes").join(&pid).join("disk.img")).unwrap();
    let srv = start_with_model(data.path(), &llm, Some(addr));
    let (st, html) = preview_get(&srv.base_url, &pid, "/", "text/html").await;
    assert!(
        st == 503 && html.contains("Starting the preview") || st == 200,
        "{st} {html}"
    );
    wait_preview(
        &srv.base_url,
        &pid,
        "/src/App.tsx",
        "PREVIEW-MARKER-REVIVED",
    )
    .await;
}

/// The host's own addresses (not loopback), as `ip` lists them.
fn host_addresses() -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args(["-o", "addr", "show", "scope", "global"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3))
        .filter_map(|a| a.split('/').next())
        .map(str::to_owned)
        .collect()
}

fn node_probe(host: &str, port: u16, tag: &str) -> String {
    format!(
        "node -e \"require('net').connect({port},'{host}').on('connect',()=>{{console.log('{tag}-OPEN');process.exit()}}).on('error',()=>{{console.log('{tag}-CLOSED');process.exit()}})\""
    )
}

#[tokio::test]
async fn escape_attempts_are_blocked() {
    let llm = ScriptedLlm::start().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut srv_env_secret = "codeflux-test-secret-".to_owned();
    srv_env_secret.push_str(&uuid::Uuid::new_v4().simple().to_string());
    let srv = codeflux_test_support::ServerProcess::start(codeflux_test_support::ServerOptions {
        binary: crate::support::binary(),
        workdir: crate::support::root(),
        data_dir: data.path().to_path_buf(),
        env: vec![
            ("LLM_BASE_URL".into(), llm.base_url.clone()),
            ("LLM_API_KEY".into(), "sk-SENTINEL-escape".into()),
            ("LLM_MODEL".into(), "scripted".into()),
            ("CODEFLUX_TEST_HOST_SECRET".into(), srv_env_secret.clone()),
            // Listening on every address needs accounts on.
            ("CODEFLUX_AUTH".into(), "on".into()),
        ],
        // On every address, so that the host's own addresses really lead to the app.
        addr: Some("[::]:0".into()),
    })
    .unwrap();
    let port: u16 = srv.base_url.rsplit(':').next().unwrap().parse().unwrap();
    // The host's own addresses that lead to the app from the host (so that the probe means
    // something); the sandbox must reach none of them.
    let hosts: Vec<String> = host_addresses()
        .into_iter()
        .filter(|h| {
            let target = if h.contains(':') {
                format!("[{h}]:{port}")
            } else {
                format!("{h}:{port}")
            };
            std::net::TcpStream::connect(&target).is_ok()
        })
        .collect();
    assert!(
        !hosts.is_empty(),
        "at least one of the host's addresses reaches the app: {:?}",
        host_addresses()
    );

    // Project B: its dev server is "another sandbox" for A.
    llm.push([
        Turn::tool("createOrUpdateFiles", json!({"files": [{"path": "src/App.tsx", "content": "export default function App(){return <p>MARKER-OTHER</p>}\n"}]})),
        Turn::text("<task_summary>B</task_summary>"),
    ]);
    let token = crate::support::admin_token(&srv.base_url).await;
    let tok = Some(token.as_str());
    let (_, b) = call_as(
        &srv.base_url,
        tok,
        "projects/create",
        &[("prompt", "project B")],
    )
    .await;
    let pid_b = b["id"].as_str().unwrap().to_owned();
    sse_as(&srv.base_url, tok, &pid_b, None, is_end).await;
    wait_preview(&srv.base_url, &pid_b, "/src/App.tsx", "MARKER-OTHER").await;

    let checkout = crate::support::root().display().to_string();
    let probes = [
        "echo ENV-BEGIN; env; cat /proc/1/environ 2>&1 | tr '\\0' '\\n'; for f in /proc/[0-9]*/environ; do tr '\\0' '\\n' < $f; done 2>/dev/null | head -c 50000; echo ENV-END".to_owned(),
        format!("ls -la {} {checkout} /root /home 2>&1 | head -50", data.path().display()),
        "cat /etc/shadow 2>&1 | head -3".to_owned(),
        node_probe("127.0.0.1", 5432, "PG"),
        node_probe("127.0.0.1", port, "APP"),
        hosts
            .iter()
            .map(|h| node_probe(h, port, "HOSTIP"))
            .collect::<Vec<_>>()
            .join(" ; "),
        "for p in 3000 5173 5174 8080; do node -e \"fetch('http://127.0.0.1:'+$p+'/src/App.tsx').then(r=>r.text()).then(t=>console.log(t.includes('MARKER-OTHER')?'OTHER-REACHED':'other-no')).catch(()=>console.log('other-closed'))\"; done".to_owned(),
    ]
    .join(" ; ");
    llm.push([
        Turn::tool("terminal", json!({"command": probes})),
        Turn::tool("terminal", json!({"command": "ln -s /etc/passwd link.txt; ln -s / rootlink; echo LINKED"})),
        Turn::tools(vec![
            ("readFiles", json!({"files": ["/etc/passwd", "../../../../../../etc/passwd", "link.txt", "rootlink/etc/passwd"]})),
            ("createOrUpdateFiles", json!({"files": [
                {"path": "../escape-rel.txt", "content": "x"},
                {"path": "/tmp/codeflux-escape-abs.txt", "content": "x"},
                {"path": "rootlink/tmp/codeflux-escape-link.txt", "content": "x"}]})),
        ]),
        // The forking loop in a subshell (sh gives up at the first failed fork); the count
        // with builtins only, in the sandbox's own PID namespace.
        Turn::tool("terminal", json!({"command": "(i=0; while [ $i -lt 3000 ]; do sleep 20 & i=$((i+1)); done) 2>/tmp/fork.err; set -- /proc/[0-9]*; echo LIVE=$#; kill -9 -1 2>/dev/null; sleep 1; head -c 300 /tmp/fork.err"})),
        Turn::tool("terminal", json!({"command": "node -e \"const a=[];for(let i=1;i<=40;i++){a.push(Buffer.alloc(256*1024*1024,1));console.log('MB',i*256)}\" 2>&1 | tail -3"})),
        Turn::text("<task_summary>Probed.</task_summary>"),
    ]);
    let (_, a) = call_as(
        &srv.base_url,
        tok,
        "projects/create",
        &[("prompt", "project A")],
    )
    .await;
    let pid_a = a["id"].as_str().unwrap().to_owned();
    let events = sse_as(&srv.base_url, tok, &pid_a, None, is_end).await;
    assert_eq!(events.last().unwrap().1, "run_finished", "{events:?}");
    let (st, _) = crate::support::get(&format!("{}/healthz", srv.base_url)).await;
    assert_eq!(st, 200, "the server is unharmed");

    let results: Vec<String> = llm
        .agent_requests()
        .last()
        .unwrap()
        .messages()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap_or_default().to_owned())
        .collect();
    let all = results.join("\n");
    assert!(
        all.contains("ENV-BEGIN") && all.contains("ENV-END"),
        "the probes ran: {all}"
    );
    assert!(
        !all.contains("SENTINEL") && !all.contains(&srv_env_secret),
        "no secret of the server visible"
    );
    assert!(
        !all.contains("DATABASE_URL")
            && !all.contains("CODEFLUX_DATA_DIR")
            && !all.contains("LLM_"),
        "no server config visible"
    );
    assert!(!all.contains("Cargo.toml"), "the checkout is invisible");
    assert!(!all.contains("codeflux.db"), "the data dir is invisible");
    assert!(
        !all.contains("root:x:0:0:root") && !all.contains("root:$"),
        "host passwd/shadow unreadable"
    );
    assert!(
        all.contains("PG-CLOSED") && !all.contains("PG-OPEN"),
        "host PostgreSQL unreachable"
    );
    assert!(
        all.contains("APP-CLOSED") && !all.contains("APP-OPEN"),
        "the app unreachable on loopback"
    );
    assert!(
        all.matches("HOSTIP-CLOSED").count() == hosts.len() && !all.contains("HOSTIP-OPEN"),
        "the app unreachable on the host's addresses {hosts:?}"
    );
    assert!(
        !all.contains("OTHER-REACHED"),
        "another project's dev server unreachable"
    );
    let reads = &results[2];
    assert!(
        reads.matches("\"error\"").count() == 4 && !reads.contains("root:x:0:0"),
        "{reads}"
    );
    assert!(
        results[3].contains("Not written") && !results[3].contains("Wrote"),
        "{}",
        results[3]
    );
    assert!(!std::path::Path::new("/tmp/codeflux-escape-abs.txt").exists());
    assert!(!std::path::Path::new("/tmp/codeflux-escape-link.txt").exists());
    assert!(
        !data
            .path()
            .join("sandboxes")
            .join("escape-rel.txt")
            .exists()
    );
    assert!(
        !data
            .path()
            .join("sandboxes")
            .join(&pid_a)
            .join("escape-rel.txt")
            .exists()
    );
    let spawned = &results[4];
    let live: usize = spawned
        .split("LIVE=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        (100..=400).contains(&live),
        "process count limited to the commands' share (384 of 512): {live} live: {spawned}"
    );
    let mem = &results[5];
    let max_mb = mem
        .split("MB ")
        .skip(1)
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    assert!(
        max_mb < 8192,
        "memory limited (the hog reached {max_mb} MB): {mem}"
    );
    // A's snapshot holds no symlink (neither link.txt nor rootlink).
    let (_, msgs) = call_as(
        &srv.base_url,
        tok,
        "messages/get_many",
        &[("project_id", &pid_a)],
    )
    .await;
    let files = msgs.as_array().unwrap().last().unwrap()["fragment"]["files"]
        .as_object()
        .unwrap()
        .clone();
    assert!(!files.contains_key("link.txt") && !files.keys().any(|k| k.starts_with("rootlink")));
    // B still answers.
    wait_preview(&srv.base_url, &pid_b, "/src/App.tsx", "MARKER-OTHER").await;
}
