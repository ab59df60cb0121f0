//! The dev server's supervisor: it heals after crashing, and a flood of output costs the server
//! bounded memory.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use codeflux_protocol::Template;
use codeflux_sandbox::local::{LocalConfig, LocalProvider};
use codeflux_sandbox::template::TemplateStore;
use codeflux_sandbox::{PreviewState, SandboxProvider};
use uuid::Uuid;

use crate::{config, require_root, templates_dir};

fn template_files(data: &std::path::Path) -> BTreeMap<String, String> {
    TemplateStore::new(templates_dir(), config(data).template_cache)
        .source_texts(Template::ViteReact)
        .unwrap()
}

async fn wait_state(
    p: &LocalProvider,
    id: Uuid,
    limit: Duration,
    what: &str,
    want: impl Fn(&PreviewState) -> bool,
) -> PreviewState {
    let t0 = Instant::now();
    loop {
        let s = p.preview_state(id);
        if want(&s) {
            return s;
        }
        assert!(
            t0.elapsed() < limit,
            "{what}: still {s:?}; log: {:?}",
            p.dev_server_log(id)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_crashing_dev_server_gives_up_says_why_and_heals() {
    require_root();
    let data = tempfile::tempdir().unwrap();
    let p = LocalProvider::new(LocalConfig {
        dev_servers: true,
        ..config(data.path())
    })
    .unwrap();
    let id = Uuid::new_v4();
    let mut files = template_files(data.path());
    let good = files["vite.config.ts"].clone();
    files.insert(
        "vite.config.ts".into(),
        format!("console.error('CRASH-MARKER: the config throws');\nprocess.exit(3);\n{good}"),
    );
    let sb = p.open(id, Template::ViteReact, Some(&files)).await.unwrap();
    let state = wait_state(&p, id, Duration::from_secs(90), "giving up", |s| {
        matches!(s, PreviewState::Failed(_))
    })
    .await;
    let PreviewState::Failed(why) = state else {
        unreachable!()
    };
    assert!(
        why.contains("CRASH-MARKER") && why.contains("keeps stopping"),
        "the reason shows the last output: {why}"
    );
    // Fixed by the next edit; the next request starts it again once the back-off has passed.
    sb.write_file("vite.config.ts", &good).await.unwrap();
    p.start_preview(id, Template::ViteReact, None)
        .await
        .unwrap();
    assert!(
        matches!(p.preview_state(id), PreviewState::Failed(_)),
        "not before the back-off"
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    p.start_preview(id, Template::ViteReact, None)
        .await
        .unwrap();
    wait_state(&p, id, Duration::from_secs(60), "healing", |s| {
        *s == PreviewState::Ready
    })
    .await;
}

/// Resident memory of this process, in bytes.
fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .unwrap()
        * 1024
}

#[tokio::test]
async fn a_dev_server_flooding_its_output_costs_bounded_memory() {
    require_root();
    let data = tempfile::tempdir().unwrap();
    let p = LocalProvider::new(LocalConfig {
        dev_servers: true,
        ..config(data.path())
    })
    .unwrap();
    let id = Uuid::new_v4();
    let mut files = template_files(data.path());
    let cfg = files["vite.config.ts"].clone();
    files.insert(
        "vite.config.ts".into(),
        format!("setInterval(() => process.stdout.write('x'.repeat(65536)), 1);\n{cfg}"),
    );
    let _sb = p.open(id, Template::ViteReact, Some(&files)).await.unwrap();
    // The flood starts with the config.
    let t0 = Instant::now();
    while p.dev_server_log_bytes(id).1 < 8 << 20 {
        assert!(t0.elapsed() < Duration::from_secs(60), "no flood seen");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = rss();
    let read_before = p.dev_server_log_bytes(id).1;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after = rss();
    let (kept, read) = p.dev_server_log_bytes(id);
    assert!(
        read - read_before > 16 << 20,
        "the flood went on: {} MB read in 10 s",
        (read - read_before) >> 20
    );
    assert!(kept <= 64 * 1024, "the log keeps {kept} bytes");
    let lines = p.dev_server_log(id);
    assert!(
        lines.iter().all(|l| l.chars().count() < 600),
        "long lines are shortened"
    );
    assert!(
        after < before + 64 * 1024 * 1024,
        "memory grew from {} MB to {} MB",
        before >> 20,
        after >> 20
    );
}

/// A link to the sandbox's root (or /proc) in the project (as a hostile or careless command
/// makes) does not make the dev server crawl everything until it is killed for memory: Tailwind
/// scans only `src/` and `index.html`, Vite's watcher does not follow links, its dependency scan
/// starts from the page. (A link planted inside `src/` is still followed by Tailwind's scan: the
/// project then only hurts its own preview.)
#[tokio::test]
async fn a_link_to_the_root_does_not_sink_the_dev_server() {
    require_root();
    let data = tempfile::tempdir().unwrap();
    let p = LocalProvider::new(LocalConfig {
        dev_servers: true,
        ..config(data.path())
    })
    .unwrap();
    let id = Uuid::new_v4();
    let sb = p.open(id, Template::ViteReact, None).await.unwrap();
    wait_state(&p, id, Duration::from_secs(60), "ready", |s| {
        *s == PreviewState::Ready
    })
    .await;
    let r = crate::sh(
        &sb,
        "ln -s / rootlink && ln -s /proc proclink && echo LINKED",
    )
    .await;
    assert!(r.output.contains("LINKED"), "{}", r.output);
    let t0 = Instant::now();
    let mut peak = 0u64;
    while t0.elapsed() < Duration::from_secs(25) {
        // The page is used meanwhile, as a person previewing it does.
        for path in ["/", "/src/App.tsx"] {
            if let Ok(mut c) = p.connect_preview(id).await {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let req =
                    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
                if c.write_all(req.as_bytes()).await.is_ok() {
                    let mut body = Vec::new();
                    let _ = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut body))
                        .await;
                }
            }
        }
        assert_eq!(
            p.preview_state(id),
            PreviewState::Ready,
            "the dev server stopped; log: {:?}",
            p.dev_server_log(id)
        );
        peak = peak.max(p.sandbox_rss(id).unwrap_or(0));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        !p.dev_server_log(id)
            .iter()
            .any(|l| l.contains("the dev server stopped")),
        "{:?}",
        p.dev_server_log(id)
    );
    assert!(peak < 1 << 30, "the sandbox grew to {} MB", peak >> 20);
    // Tailwind still finds the app's classes (the template's App.tsx uses `max-w-md`).
    let mut c = p.connect_preview(id).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    c.write_all(b"GET /src/index.css HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut body = Vec::new();
    let t1 = Instant::now();
    let mut buf = [0u8; 16384];
    while !String::from_utf8_lossy(&body).contains("max-w-md")
        && t1.elapsed() < Duration::from_secs(30)
    {
        match tokio::time::timeout(Duration::from_secs(30), c.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => body.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    assert!(
        String::from_utf8_lossy(&body).contains("max-w-md"),
        "the CSS has the app's classes: {}",
        String::from_utf8_lossy(&body)
            .chars()
            .take(600)
            .collect::<String>()
    );
}
