//! CODEFLUX_SANDBOX=e2b through the real server, against the loopback double of E2B: a run's
//! files and commands land in the project's E2B sandbox, the preview is served through the
//! app's port from E2B's edge (the HMR websocket too), a stop kills the sandbox on E2B and the
//! preview comes back from the server's records in a new one.

use std::time::{Duration, Instant};

use codeflux_test_support::e2b_double::{DoubleTemplate, E2bDouble};
use codeflux_test_support::scripted_llm::{ScriptedLlm, Turn};
use codeflux_test_support::{ServerOptions, ServerProcess};
use serde_json::json;

use crate::sandbox::{preview_get, wait_preview, websocket_until};
use crate::support::{call, root, sse_until_end};

/// The template's dev server in the double: serves the sandbox's files on $PORT and answers a
/// websocket upgrade (as Vite's HMR does) with 101, then a line naming the Host it saw.
const SERVE: &str = r#"cat > /tmp/cf-dev-$PORT.py <<'EOF'
import http.server, os
class H(http.server.SimpleHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def do_GET(self):
        if self.headers.get('Upgrade', '').lower() == 'websocket':
            self.send_response(101)
            self.send_header('Upgrade', 'websocket')
            self.send_header('Connection', 'Upgrade')
            self.end_headers()
            self.wfile.write(('WS-HELLO host=' + self.headers.get('Host', '') + '\n').encode())
            self.wfile.flush()
            self.close_connection = True
            return
        return super().do_GET()
http.server.ThreadingHTTPServer(('127.0.0.1', int(os.environ['PORT'])), H).serve_forever()
EOF
exec python3 /tmp/cf-dev-$PORT.py"#;

fn start_on_e2b(
    data: &std::path::Path,
    llm: &ScriptedLlm,
    double: &E2bDouble,
    addr: Option<String>,
) -> ServerProcess {
    ServerProcess::start(ServerOptions {
        binary: crate::support::binary(),
        workdir: root(),
        data_dir: data.to_path_buf(),
        env: vec![
            ("LLM_BASE_URL".into(), llm.base_url.clone()),
            ("LLM_API_KEY".into(), "sk-e2b-test".into()),
            ("LLM_MODEL".into(), "scripted".into()),
            ("CODEFLUX_SANDBOX".into(), "e2b".into()),
            ("E2B_API_KEY".into(), double.api_key.clone()),
            ("E2B_API_URL".into(), double.base_url.clone()),
            ("E2B_SANDBOX_URL".into(), double.base_url.clone()),
        ],
        addr,
    })
    .expect("server starts")
}

// The double answers on the test's runtime while the test blocks on stopping the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_runs_and_previews_on_e2b() {
    let double = E2bDouble::start_with(vec![(
        "codeflux-vite-react".into(),
        DoubleTemplate {
            seed: Some(root().join("sandbox-templates/vite-react")),
            start_cmd: Some(SERVE.into()),
        },
    )])
    .await
    .unwrap();
    let llm = ScriptedLlm::start().await.unwrap();
    llm.push([
        Turn::tool(
            "createOrUpdateFiles",
            json!({"files": [{"path": "src/App.tsx", "content": "export default () => 'E2B-MARKER'"}]}),
        ),
        Turn::tool("terminal", json!({"command": "cat src/App.tsx | tr a-z A-Z; echo \"home=$HOME\""})),
        Turn::text("<task_summary>A page on E2B.</task_summary>"),
    ]);
    let data = tempfile::tempdir().unwrap();
    let srv = start_on_e2b(data.path(), &llm, &double, None);
    let (st, p) = call(&srv.base_url, "projects/create", &[("prompt", "a page")]).await;
    assert_eq!(st, 200, "{p}");
    let pid = p["id"].as_str().unwrap().to_owned();
    let events = sse_until_end(&srv.base_url, &pid).await;
    let kinds: Vec<&str> = events.iter().map(|(_, k, _)| k.as_str()).collect();
    assert_eq!(kinds.last(), Some(&"run_finished"), "{kinds:?}");
    let all = serde_json::to_string(&events.iter().map(|e| &e.2).collect::<Vec<_>>()).unwrap();
    assert!(
        all.contains("EXPORT DEFAULT"),
        "the command ran in the sandbox: {all}"
    );

    // The version stored from the sandbox's snapshot.
    let (_, msgs) = call(&srv.base_url, "messages/get_many", &[("project_id", &pid)]).await;
    let msgs = msgs.as_array().unwrap();
    assert_eq!(msgs[1]["type"], "RESULT");
    let files = &msgs[1]["fragment"]["files"];
    assert!(
        files["src/App.tsx"]
            .as_str()
            .unwrap()
            .contains("E2B-MARKER")
    );
    assert!(
        files["index.html"].is_string(),
        "the template's files too: {files}"
    );

    // The run worked in one E2B sandbox, made from the project's template.
    let sandboxes = double.sandboxes();
    assert_eq!(sandboxes.len(), 1);
    let home = double.home(&sandboxes[0]).unwrap();
    let written = std::fs::read_to_string(home.join("src/App.tsx")).unwrap();
    assert!(written.contains("E2B-MARKER"));
    let log = double.log();
    assert!(log.iter().any(|(m, p)| m == "POST" && p == "/sandboxes"));
    assert!(log.iter().any(|(_, p)| p == "/process.Process/Start"));

    // The preview through the app's port, from the sandbox's dev server on E2B.
    wait_preview(&srv.base_url, &pid, "/src/App.tsx", "E2B-MARKER").await;
    // A websocket (HMR) through the app's port and E2B's edge: the upgrade is joined end to
    // end, and the dev server saw the Host E2B masks for it.
    let hello = websocket_until(&srv.base_url, &pid, "t", "WS-HELLO").await;
    assert!(hello.starts_with("HTTP/1.1 101"), "{hello}");
    assert!(hello.contains("WS-HELLO host=localhost:5173"), "{hello}");

    // The server stops: its sandboxes are killed on E2B. Started again, the preview comes
    // back from the stored version in a new sandbox.
    let addr = srv.addr().to_owned();
    let out = srv.stop().unwrap();
    assert!(
        double.sandboxes().is_empty(),
        "{:?}\n{out}",
        double.sandboxes()
    );
    let srv = start_on_e2b(data.path(), &llm, &double, Some(addr));
    let (st, _) = preview_get(&srv.base_url, &pid, "/", "text/html").await;
    assert!(st == 200 || st == 503, "{st}");
    wait_preview(&srv.base_url, &pid, "/src/App.tsx", "E2B-MARKER").await;
    let t0 = Instant::now();
    while double.sandboxes().len() != 1 {
        assert!(t0.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Deleting the project kills its sandbox.
    let (st, body) = call(&srv.base_url, "projects/delete", &[("id", &pid)]).await;
    assert_eq!(st, 200, "{body}");
    let t0 = Instant::now();
    while !double.sandboxes().is_empty() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the sandbox outlived its project"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn e2b_without_a_key_is_refused_at_start() {
    let data = tempfile::tempdir().unwrap();
    let e = ServerProcess::start(ServerOptions {
        binary: crate::support::binary(),
        workdir: root(),
        data_dir: data.path().to_path_buf(),
        env: vec![
            ("CODEFLUX_SANDBOX".into(), "e2b".into()),
            ("E2B_API_KEY".into(), " ".into()),
        ],
        addr: None,
    })
    .err()
    .expect("refused");
    assert!(e.to_string().contains("E2B_API_KEY"), "{e}");
}
