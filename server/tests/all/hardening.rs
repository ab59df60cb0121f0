//! The hardened sandbox through the real server: links planted every way a command can plant
//! them, then every host-side operation (idle stop, restart, revive, follow-up, version switch,
//! zip, delete) with root-owned canaries outside the data dir watched byte for byte; and a
//! server killed outright leaves nothing running and nothing the next server does not clean.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use codeflux_test_support::scripted_llm::{ScriptedLlm, Turn};
use codeflux_test_support::{ServerOptions, ServerProcess};
use serde_json::{Value, json};

use crate::support::{binary, call, http, root, sse_until_end};

/// (mode, uid, gid, content or sorted entries) of a path.
type State = (u32, u32, u32, Vec<u8>);

/// The [`State`] of a path, without following it.
fn state(p: &Path) -> State {
    let m = std::fs::symlink_metadata(p).unwrap();
    let body = if m.is_dir() {
        let mut e: Vec<String> = std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        e.sort();
        e.join("\n").into_bytes()
    } else {
        std::fs::read(p).unwrap()
    };
    (m.mode(), m.uid(), m.gid(), body)
}

struct Canaries {
    _keep: tempfile::TempDir,
    dir: PathBuf,
    file: PathBuf,
    before: Vec<(PathBuf, State)>,
}

impl Canaries {
    fn new() -> Canaries {
        use std::os::unix::fs::PermissionsExt;
        let keep = tempfile::Builder::new()
            .prefix("cf-srv-canary-")
            .tempdir_in("/var/tmp")
            .unwrap();
        std::fs::set_permissions(keep.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let dir = keep.path().join("dir");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let file = keep.path().join("file");
        std::fs::write(&file, format!("CANARY {}\n", uuid::Uuid::new_v4())).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let before = vec![(dir.clone(), state(&dir)), (file.clone(), state(&file))];
        Canaries {
            _keep: keep,
            dir,
            file,
            before,
        }
    }

    fn check(&self, when: &str) {
        for (p, s) in &self.before {
            assert_eq!(&state(p), s, "{when}: canary {} changed", p.display());
        }
    }
}

fn start(data: &Path, llm: &ScriptedLlm, addr: Option<String>) -> ServerProcess {
    ServerProcess::start(ServerOptions {
        binary: binary(),
        workdir: root(),
        data_dir: data.to_path_buf(),
        env: vec![
            ("LLM_BASE_URL".into(), llm.base_url.clone()),
            ("LLM_API_KEY".into(), "sk-hardening".into()),
            ("LLM_MODEL".into(), "scripted".into()),
            ("CODEFLUX_PREVIEW_IDLE_SECS".into(), "5".into()),
        ],
        addr,
    })
    .unwrap()
}

async fn preview(base: &str, pid: &str, path: &str) -> (u16, String) {
    let port = base.rsplit(':').next().unwrap();
    let res = http()
        .get(format!("{base}{path}"))
        .header("host", format!("{pid}.preview.localhost:{port}"))
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

/// Waits until the dev server serves `needle` at `path`.
async fn wait_path(base: &str, pid: &str, path: &str, needle: &str) {
    let t0 = Instant::now();
    loop {
        let (st, body) = preview(base, pid, path).await;
        if st == 200 && body.contains(needle) {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "{pid}'s preview never served {needle}: {st} {}",
            body.split("<body>").nth(1).unwrap_or(&body)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn wait_preview(base: &str, pid: &str, needle: &str) {
    wait_path(base, pid, "/src/App.tsx", needle).await;
}

/// Waits until the dev server serves the app's page (the sources the agent left may not
/// compile; the page itself is served by the dev server).
async fn wait_page(base: &str, pid: &str) {
    wait_path(base, pid, "/", "/src/main.tsx").await;
}

async fn messages(base: &str, pid: &str) -> Vec<Value> {
    let (_, m) = call(base, "messages/get_many", &[("project_id", pid)]).await;
    m.as_array().cloned().unwrap_or_default()
}

/// Sends a follow-up and waits for its answer (the next ASSISTANT message).
async fn follow_up(base: &str, pid: &str, content: &str) -> Value {
    let before = messages(base, pid).await.len();
    let (st, _) = call(
        base,
        "messages/create",
        &[("project_id", pid), ("content", content)],
    )
    .await;
    assert_eq!(st, 200);
    let t0 = Instant::now();
    loop {
        let m = messages(base, pid).await;
        if m.len() >= before + 2 {
            return m.last().cloned().unwrap();
        }
        assert!(t0.elapsed() < Duration::from_secs(180), "no answer");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn planted_links_never_reach_the_host_through_the_server() {
    let canaries = Canaries::new();
    let (d, f) = (canaries.dir.display(), canaries.file.display());
    let plants = [
        format!("rm -f package.json; rm -rf node_modules; ln -s {d} node_modules"),
        format!(
            "rm -rf node_modules; mkdir node_modules; ln -s {f} node_modules/.package-lock.json; \
             ln -s {d} node_modules/.vite; ln -s {d} node_modules/react; rm -rf .home; ln -s {d} .home; \
             ln -sf {f} package.json; rm -rf src/components; ln -s {d} src/components; ln -s {f} .env"
        ),
    ];
    let llm = ScriptedLlm::start().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let srv = start(data.path(), &llm, None);
    let mut pids = Vec::new();
    for plant in &plants {
        llm.push([
            Turn::tool(
                "terminal",
                json!({"command": format!("{plant}; echo PLANTED")}),
            ),
            Turn::text("<task_summary>Cleaned up.</task_summary>"),
        ]);
        let (st, p) = call(
            &srv.base_url,
            "projects/create",
            &[("prompt", "a notes app")],
        )
        .await;
        assert_eq!(st, 200, "{p}");
        let pid = p["id"].as_str().unwrap().to_owned();
        let events = sse_until_end(&srv.base_url, &pid).await;
        assert_eq!(events.last().unwrap().1, "run_finished", "{events:?}");
        pids.push(pid);
    }
    canaries.check("after the plants");

    // Idle stop (5 s without use), then a preview request revives each project.
    tokio::time::sleep(Duration::from_secs(9)).await;
    for pid in &pids {
        wait_page(&srv.base_url, pid).await;
    }
    canaries.check("after idle stop and revive");

    // A restart on the same data, then a preview request and a follow-up for each.
    let addr = srv.addr().to_owned();
    srv.stop().unwrap();
    canaries.check("after the server stopped");
    let srv = start(data.path(), &llm, Some(addr));
    for (i, pid) in pids.iter().enumerate() {
        wait_page(&srv.base_url, pid).await;
        let marker = format!("REPAIRED-{i}");
        llm.push([
            Turn::tool(
                "createOrUpdateFiles",
                json!({"files": [{"path": "src/App.tsx", "content": format!("export default function App() {{ return <h1>{marker}</h1>; }}\n")}]}),
            ),
            Turn::tool("terminal", json!({"command": "test -d node_modules/vite && test ! -L node_modules && echo PACKAGES-BACK"})),
            Turn::text("<task_summary>Repaired.</task_summary>"),
        ]);
        let answer = follow_up(&srv.base_url, pid, "Add a heading").await;
        assert_eq!(answer["type"], "RESULT", "{answer}");
        wait_preview(&srv.base_url, pid, &marker).await;
    }
    let outputs: String = llm
        .agent_requests()
        .iter()
        .flat_map(|r| r.messages().to_vec())
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        outputs.matches("PACKAGES-BACK").count(),
        2,
        "both workspaces have their packages again: {outputs}"
    );
    canaries.check("after the follow-ups");

    // Version switch back to the planted version, zips of every version, then delete.
    for pid in &pids {
        let versions: Vec<String> = messages(&srv.base_url, pid)
            .await
            .iter()
            .filter_map(|m| m["fragment"]["id"].as_str().map(str::to_owned))
            .collect();
        assert_eq!(versions.len(), 2);
        let (st, body) = call(
            &srv.base_url,
            "preview/show",
            &[("project_id", pid), ("fragment_id", &versions[0])],
        )
        .await;
        assert_eq!(st, 200, "{body}");
        canaries.check("after a version switch");
        for v in &versions {
            let res = http()
                .get(format!("{}/api/fragments/{v}/zip", srv.base_url))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
            let bytes = res.bytes().await.unwrap();
            assert!(bytes.starts_with(b"PK"), "a zip");
        }
        let (st, body) = call(&srv.base_url, "projects/delete", &[("id", pid)]).await;
        assert_eq!(st, 200, "{body}");
        let (st, _) = call(&srv.base_url, "projects/get", &[("id", pid)]).await;
        assert_eq!(st, 404);
        assert!(!data.path().join("sandboxes").join(pid).exists());
        canaries.check("after delete");
    }
    srv.stop().unwrap();
    canaries.check("at the end");
}

/// Processes whose memory cgroup lies under this server's directory.
fn processes_of_server(server_pid: u32) -> Vec<u32> {
    let needle = format!("/codeflux/srv-{server_pid}-");
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if std::fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|c| c.contains(&needle))
        {
            out.push(pid);
        }
    }
    out
}

/// This server's cgroup directories (any hierarchy).
fn server_groups(server_pid: u32) -> Vec<PathBuf> {
    let prefix = format!("srv-{server_pid}-");
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::from("/sys/fs/cgroup")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(&prefix) {
                out.push(e.path());
            } else if d.ends_with("codeflux") {
                continue;
            } else if stack.len() < 64 {
                stack.push(e.path());
            }
        }
    }
    out
}

#[tokio::test]
async fn a_killed_server_leaves_nothing_running_and_its_groups_are_removed() {
    let llm = ScriptedLlm::start().await.unwrap();
    llm.push([Turn::text("<task_summary>Started.</task_summary>")]);
    let data = tempfile::tempdir().unwrap();
    let srv = start(data.path(), &llm, None);
    let (_, p) = call(&srv.base_url, "projects/create", &[("prompt", "a page")]).await;
    let pid = p["id"].as_str().unwrap().to_owned();
    sse_until_end(&srv.base_url, &pid).await;
    wait_preview(&srv.base_url, &pid, "export").await;
    let server_pid = srv.pid();
    assert!(
        !processes_of_server(server_pid).is_empty(),
        "the dev server runs in the server's groups"
    );
    assert!(!server_groups(server_pid).is_empty());
    let addr = srv.addr().to_owned();
    srv.kill();
    // Every process of its sandboxes dies with it (parent-death signals).
    let t0 = Instant::now();
    while !processes_of_server(server_pid).is_empty() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "processes outlived the killed server: {:?}",
            processes_of_server(server_pid)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Its (now empty) groups stay until the next server on this machine removes them.
    let left = server_groups(server_pid);
    assert!(
        !left.is_empty(),
        "the groups are only removed by the next server"
    );
    let srv = start(data.path(), &llm, Some(addr));
    for g in &left {
        assert!(!g.exists(), "{} was not removed", g.display());
    }
    // And the project works on the new server.
    wait_preview(&srv.base_url, &pid, "export").await;
}
