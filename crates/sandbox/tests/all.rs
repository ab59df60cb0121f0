//! The sandbox for real: workspace files against planted symlinks, and commands in bubblewrap.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use codeflux_protocol::Template;
use codeflux_sandbox::local::{LocalConfig, LocalProvider};
use codeflux_sandbox::workspace::{FileError, Workspace, clean_path};
use codeflux_sandbox::{RunOptions, SandboxProvider};
use uuid::Uuid;

fn templates_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sandbox-templates")
}

#[test]
fn paths_are_cleaned_or_refused() {
    assert_eq!(clean_path("./src//App.tsx").unwrap(), "src/App.tsx");
    for bad in ["", "/etc/passwd", "../x", "src/../../x", "~/x", "a\0b", "."] {
        assert!(clean_path(bad).is_err(), "{bad:?} should be refused");
    }
}

#[test]
fn file_tools_never_leave_the_workspace() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.env"), "SECRET=1").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ws = Workspace::open(dir.path(), None).unwrap();
    ws.write("src/App.tsx", "export default 1\n").unwrap();
    assert_eq!(ws.read("src/App.tsx").unwrap(), "export default 1\n");

    // Planted links, as a command in the sandbox could make them.
    std::os::unix::fs::symlink("/etc/passwd", dir.path().join("link.txt")).unwrap();
    std::os::unix::fs::symlink("/", dir.path().join("rootlink")).unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("out")).unwrap();
    std::os::unix::fs::symlink("../..", dir.path().join("src/up")).unwrap();
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        dir.path().join("pipe"),
        rustix::fs::Mode::from_raw_mode(0o644),
    )
    .unwrap();

    for path in [
        "link.txt",
        "rootlink/etc/passwd",
        "out/secret.env",
        "src/up/etc/passwd",
        "../etc/passwd",
        "/etc/passwd",
    ] {
        let err = ws.read(path).unwrap_err();
        assert!(
            matches!(err, FileError::Escapes(_) | FileError::InvalidPath { .. }),
            "{path}: {err:?}"
        );
    }
    assert!(
        matches!(ws.read("pipe").unwrap_err(), FileError::NotRegular { .. }),
        "a FIFO never blocks a read"
    );
    for path in [
        "rootlink/tmp/escape.txt",
        "out/written.txt",
        "src/up/escape.txt",
        "../escape.txt",
        "/tmp/escape.txt",
    ] {
        assert!(ws.write(path, "x").is_err(), "{path} must not be written");
    }
    assert!(!outside.path().join("written.txt").exists());
    assert!(!Path::new("/tmp/escape.txt").exists());
    // Writing over a symlink replaces the link; the target is untouched.
    ws.write("link.txt", "mine").unwrap();
    assert_eq!(ws.read("link.txt").unwrap(), "mine");
    assert!(
        std::fs::read_to_string("/etc/passwd")
            .unwrap()
            .contains("root")
    );

    // Listing shows regular files only and skips installed packages.
    ws.write("node_modules/x/index.js", "x").unwrap();
    assert_eq!(ws.list().unwrap(), vec!["link.txt", "src/App.tsx"]);
    let snap = ws.snapshot().unwrap();
    assert_eq!(snap.len(), 2);

    ws.replace_sources(&BTreeMap::from([(
        "src/main.ts".to_owned(),
        "new".to_owned(),
    )]))
    .unwrap();
    assert_eq!(ws.list().unwrap(), vec!["src/main.ts"]);
    assert!(
        dir.path().join("node_modules/x/index.js").exists(),
        "packages survive a restore"
    );
}

async fn provider(data: &Path) -> LocalProvider {
    LocalProvider::new(LocalConfig {
        dev_servers: false,
        ..LocalConfig::new(data.to_path_buf(), templates_dir(), 3000).with_host_npm()
    })
    .unwrap()
}

#[tokio::test]
async fn commands_run_isolated_in_the_workspace() {
    let data = tempfile::tempdir().unwrap();
    let p = provider(data.path()).await;
    let id = Uuid::new_v4();
    let sb = p.open(id, Template::ViteReact, None).await.unwrap();
    let files = sb.list_files().await.unwrap();
    assert!(
        files.contains(&"package.json".to_owned()),
        "seeded from the template"
    );
    assert!(!files.iter().any(|f| f.starts_with("node_modules")));
    assert_eq!(
        sb.preview_url(),
        format!("http://{id}.preview.localhost:3000/")
    );
    sb.write_file("hello.txt", "hi from the host")
        .await
        .unwrap();
    let opts = RunOptions::default();
    let run = |cmd: &'static str| {
        let sb = sb.clone();
        let opts = opts.clone();
        async move { sb.run(cmd, &opts, None).await.unwrap() }
    };

    let r = run("pwd; cat hello.txt; echo made > made.txt; id -u; env | sort; ls node_modules | head -3; echo tmp > /tmp/x && cat /tmp/x").await;
    assert_eq!(r.exit_code, Some(0), "{}", r.output);
    assert!(
        r.output.contains("/workspace\nhi from the host"),
        "{}",
        r.output
    );
    assert_eq!(sb.read_file("made.txt").await.unwrap(), "made\n");
    assert!(
        !r.output.contains("CARGO")
            && !r.output.contains("RUSTUP")
            && !r.output.contains("DATABASE_URL"),
        "empty environment: {}",
        r.output
    );
    assert!(
        r.output
            .contains("npm_config_https_proxy=http://127.0.0.1:3128"),
        "{}",
        r.output
    );
    if rustix::process::geteuid().is_root() {
        assert!(!r.output.contains("\n0\n"), "not root inside: {}", r.output);
    }

    let r = run("cat /proc/1/environ | wc -c; cat /proc/1/cmdline | tr '\\0' ' '; echo; ls /root /home 2>&1; cat /etc/shadow 2>&1; ls -la /etc; cat /etc/passwd").await;
    assert!(
        r.output.starts_with("0\n") || r.output.contains("Permission denied\n0\n"),
        "PID 1's environment is empty or unreadable: {}",
        r.output
    );
    assert!(
        !r.output.contains(&data.path().display().to_string()),
        "no host paths in argv: {}",
        r.output
    );
    assert!(
        r.output.contains("/root': No such file") && r.output.contains("/etc/shadow: No such file"),
        "{}",
        r.output
    );
    assert!(
        r.output.contains("app:x:"),
        "generated passwd: {}",
        r.output
    );

    // The project's own loopback: the host's services are not there; the registry is, through the proxy.
    let r = run("node -e \"require('net').connect(5432,'127.0.0.1').on('connect',()=>console.log('PG-OPEN')).on('error',()=>console.log('PG-CLOSED'))\"; getent hosts example.com || echo NO-DNS").await;
    assert!(
        r.output.contains("PG-CLOSED") && r.output.contains("NO-DNS"),
        "{}",
        r.output
    );
    if rustix::process::geteuid().is_root() {
        let r = run("npm view clsx version 2>&1 | tail -1").await;
        assert!(
            r.output.trim().starts_with(char::is_numeric),
            "npm reaches the registry through the proxy: {}",
            r.output
        );
        let r = run("curl -s -m 5 -x http://127.0.0.1:3128 https://example.com -o /dev/null -w '%{http_code}' 2>&1; echo; curl -s -m 5 -x http://127.0.0.1:3128 http://127.0.0.1:5432/ -w '%{http_code}' 2>&1").await;
        assert!(
            !r.output.contains("200"),
            "the proxy only lets the registry through: {}",
            r.output
        );
    }

    let r = run("echo out; echo err >&2; exit 3").await;
    assert_eq!(r.exit_code, Some(3));
    assert!(r.output.contains("out") && r.output.contains("err"));

    let r = sb
        .run(
            "sleep 30",
            &RunOptions {
                timeout: Duration::from_millis(500),
                ..opts.clone()
            },
            None,
        )
        .await
        .unwrap();
    assert!(r.timed_out && r.exit_code.is_none());
    assert!(r.duration < Duration::from_secs(5));

    let r = sb
        .run(
            "head -c 300000 /dev/zero | tr '\\0' x",
            &RunOptions {
                output_cap: 1000,
                ..opts.clone()
            },
            None,
        )
        .await
        .unwrap();
    assert!(r.output.len() < 1200 && r.omitted_bytes > 0);
    p.stop(id).await;
}

#[tokio::test]
async fn an_unused_sandbox_stops_and_revives_from_the_given_files() {
    let data = tempfile::tempdir().unwrap();
    let p = LocalProvider::new(LocalConfig {
        dev_servers: false,
        idle_stop: Duration::from_secs(1),
        ..LocalConfig::new(data.path().to_path_buf(), templates_dir(), 3000).with_host_npm()
    })
    .unwrap();
    let id = Uuid::new_v4();
    p.start_preview(id, Template::ViteReact, None)
        .await
        .unwrap();
    assert!(p.is_running(id));
    let t0 = std::time::Instant::now();
    while p.is_running(id) {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the idle sandbox was not stopped"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Revive from a version's files: the workspace is made exactly those sources.
    std::fs::remove_dir_all(data.path().join("workspaces").join(id.to_string())).unwrap();
    let files = BTreeMap::from([
        ("package.json".to_owned(), "{\"name\":\"app\"}".to_owned()),
        (
            "src/App.tsx".to_owned(),
            "export default () => null;\n".to_owned(),
        ),
    ]);
    p.start_preview(id, Template::ViteReact, Some(&files))
        .await
        .unwrap();
    let sb = p.open(id, Template::ViteReact, None).await.unwrap();
    assert_eq!(
        sb.list_files().await.unwrap(),
        vec!["package.json", "src/App.tsx"]
    );
}
