//! Like a deployment (issue 12): a phone that reaches the app at an address `*.localhost` does
//! not resolve to (127.0.0.2), and a phone behind nginx with TLS and a wildcard preview domain.
//! Each creates a project in headless Chromium, sees the generated page in the Preview tab, and
//! sees a follow-up's change arrive by hot reload (the page is not reloaded).

use std::time::{Duration, Instant};

use codeflux_test_support::scripted_llm::{ScriptedLlm, Turn};
use codeflux_test_support::{ServerOptions, ServerProcess};
use fantoccini::{Client, Locator};
use serde_json::{Value, json};

use crate::browser::{HYDRATED, browser_with, free_port, js, require_site, screenshot, wait_js};
use crate::support::{binary, call, root};

fn page(marker: &str) -> String {
    format!(
        "export default function App() {{\n  return <main className=\"p-8\"><h1>{marker}</h1></main>;\n}}\n"
    )
}

/// Waits until the preview iframe's document contains `text` (up to 120 s).
async fn iframe_has(c: &Client, text: &str) {
    let t0 = Instant::now();
    loop {
        let mut found = false;
        if c.clone().enter_frame(0).await.is_ok() {
            found = js(
                c,
                &format!(
                    "return document.body ? document.body.innerText.includes({}) : false",
                    json!(text)
                ),
            )
            .await
                == Value::Bool(true);
            let _ = c.clone().enter_parent_frame().await;
        }
        if found {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "the preview never showed {text}; frame: {}",
            js(
                c,
                "const f = document.querySelector('iframe'); return f ? f.src : 'none'"
            )
            .await
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn in_frame(c: &Client, script: &str) -> Value {
    c.clone().enter_frame(0).await.unwrap();
    let v = js(c, script).await;
    c.clone().enter_parent_frame().await.unwrap();
    v
}

async fn tab(c: &Client, name: &str) {
    // The page may still be rendering after a navigation: the tab is there first.
    wait_js(
        c,
        &format!("return [...document.querySelectorAll('nav[aria-label=Panes] button')].some(b => b.innerText.trim() === '{name}')"),
        "the pane tab",
    )
    .await;
    js(c, &format!("[...document.querySelectorAll('nav[aria-label=Panes] button')].find(b => b.innerText.trim() === '{name}').click(); return true")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// The whole phone flow at `base`; returns the project's id.
async fn phone_flow(c: &Client, base: &str, api: &str, llm: &ScriptedLlm, tag: &str) -> String {
    let (one, two) = (format!("DEVICE-{tag}-ONE"), format!("DEVICE-{tag}-TWO"));
    c.goto(&format!("{base}/")).await.unwrap();
    wait_js(c, HYDRATED, "hydration").await;
    llm.push([
        Turn::tool(
            "createOrUpdateFiles",
            json!({"files": [{"path": "src/App.tsx", "content": page(&one)}]}),
        ),
        Turn::text("<task_summary>A page.</task_summary>"),
    ]);
    c.find(Locator::Css("textarea#prompt-box"))
        .await
        .unwrap()
        .send_keys("Build a page that says hello")
        .await
        .unwrap();
    c.find(Locator::XPath("//button[contains(., 'Start Creating')]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_js(
        c,
        "return /\\/projects\\/[0-9a-f-]{36}$/.test(location.pathname)",
        "the project page",
    )
    .await;
    let url = c.current_url().await.unwrap();
    assert!(url.as_str().starts_with(base), "{url} under {base}");
    let pid = url.path().rsplit('/').next().unwrap().to_owned();
    wait_js(c, HYDRATED, "hydration").await;
    tab(c, "Preview").await;
    iframe_has(c, &one).await;
    screenshot(c, &format!("device-{tag}-preview-390.png")).await;
    let src = js(c, "return document.querySelector('iframe').src").await;
    assert!(
        !src.as_str().unwrap().contains(".localhost"),
        "the preview is not a .localhost name: {src}"
    );
    let (_, view) = call(api, "projects/view", &[("id", &pid)]).await;
    assert!(
        !view["preview_url"].as_str().unwrap().contains(".localhost"),
        "{view}"
    );
    // Marks the preview's document: a hot update keeps it, a reload would not.
    in_frame(c, "window.__cfKeep = 7; return true").await;

    llm.push([
        Turn::tool(
            "editFile",
            json!({"path": "src/App.tsx", "search": one, "replace": two}),
        ),
        Turn::text("<task_summary>Edited.</task_summary>"),
    ]);
    tab(c, "Chat").await;
    let box_ = c.find(Locator::Css("textarea#content-box")).await.unwrap();
    box_.send_keys("Change the heading").await.unwrap();
    box_.send_keys("\n").await.unwrap();
    tab(c, "Preview").await;
    iframe_has(c, &two).await;
    assert_eq!(
        in_frame(c, "return window.__cfKeep === 7").await,
        Value::Bool(true),
        "the change arrived by hot reload (websocket), not by reloading the page"
    );
    pid
}

#[tokio::test]
async fn a_phone_on_another_address_sees_previews_and_follow_ups() {
    require_site();
    let llm = ScriptedLlm::start().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let srv = ServerProcess::start(ServerOptions {
        binary: binary(),
        workdir: root(),
        data_dir: data.path().to_path_buf(),
        env: vec![
            ("LLM_BASE_URL".into(), llm.base_url.clone()),
            ("LLM_API_KEY".into(), "sk-device".into()),
            ("LLM_MODEL".into(), "scripted".into()),
        ],
        addr: Some("127.0.0.2:0".into()),
    })
    .unwrap();
    assert!(
        srv.base_url.starts_with("http://127.0.0.2:"),
        "{}",
        srv.base_url
    );
    let (_driver, c) = browser_with(390, 844, true, &[]).await;
    let pid = phone_flow(&c, &srv.base_url, &srv.base_url, &llm, "ports").await;
    // A preview port serves only browsers that came through the app.
    let (_, view) = call(&srv.base_url, "projects/view", &[("id", &pid)]).await;
    assert_eq!(
        view["preview_url"].as_str().unwrap(),
        format!("{}/preview/{pid}/", srv.base_url)
    );
    let _ = crate::support::http(); // installs the TLS provider reqwest needs
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let loc = plain
        .get(format!("{}/preview/{pid}/", srv.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(loc.status(), 307);
    let target = loc.headers()["location"].to_str().unwrap().to_owned();
    let port_url = target.split('?').next().unwrap().to_owned();
    let (st, body) = crate::support::get(&port_url).await;
    assert!(
        st == 403 && body.contains("Open this preview from CodeFlux"),
        "{st}"
    );
    let (st, _) = crate::support::get(&format!(
        "{port_url}?__cf_preview=0123456789abcdef0123456789abcdef"
    ))
    .await;
    assert_eq!(st, 403, "a made-up key");
    let keyed = plain.get(&target).send().await.unwrap();
    assert_eq!(keyed.status(), 302);
    let cookie = keyed.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    let page = plain
        .get(&port_url)
        .header("cookie", cookie.split(';').next().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(
        page.status(),
        200,
        "with the key's cookie the preview answers"
    );
}

/// A certificate for codeflux.test and *.preview.codeflux.test, made with openssl.
fn certificate(dir: &std::path::Path) -> (String, String) {
    let (crt, key) = (dir.join("codeflux.crt"), dir.join("codeflux.key"));
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=codeflux.test",
        ])
        .arg("-addext")
        .arg("subjectAltName=DNS:codeflux.test,DNS:*.preview.codeflux.test")
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .expect("openssl (Debian package openssl)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (crt.display().to_string(), key.display().to_string())
}

/// Debian's nginx in front, as the README sets it up; killed on drop.
struct Nginx(std::process::Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        // TERM: the master stops its workers too (KILL would orphan them).
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

fn nginx(dir: &std::path::Path, listen: u16, app_port: u16) -> Nginx {
    let (crt, key) = certificate(dir);
    let d = dir.display();
    let conf = format!(
        r#"worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 256; }}
http {{
  access_log {d}/access.log;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
  server {{
    listen 127.0.0.1:{listen} ssl;
    server_name codeflux.test *.preview.codeflux.test;
    ssl_certificate {crt};
    ssl_certificate_key {key};
    location / {{
      proxy_pass http://127.0.0.1:{app_port};
      proxy_http_version 1.1;
      proxy_set_header Host $http_host;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_buffering off;
      proxy_read_timeout 3600s;
    }}
  }}
}}
"#
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let child = std::process::Command::new("/usr/sbin/nginx")
        .arg("-p")
        .arg(format!("{d}/"))
        .arg("-c")
        .arg(&path)
        .arg("-e")
        .arg(dir.join("error.log"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("nginx (Debian package nginx-light; `cargo xtask setup` installs it)");
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", listen)).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "nginx did not start: {}",
            std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Nginx(child)
}

#[tokio::test]
async fn behind_nginx_with_tls_previews_are_https_subdomains_with_hmr_over_wss() {
    require_site();
    let llm = ScriptedLlm::start().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let tls = tempfile::tempdir().unwrap();
    let (app_port, public_port) = (free_port(), free_port());
    let public = format!("https://codeflux.test:{public_port}");
    let srv = ServerProcess::start(ServerOptions {
        binary: binary(),
        workdir: root(),
        data_dir: data.path().to_path_buf(),
        env: vec![
            ("LLM_BASE_URL".into(), llm.base_url.clone()),
            ("LLM_API_KEY".into(), "sk-tls".into()),
            ("LLM_MODEL".into(), "scripted".into()),
            ("CODEFLUX_PUBLIC_URL".into(), public.clone()),
            (
                "CODEFLUX_PREVIEW_DOMAIN".into(),
                format!("preview.codeflux.test:{public_port}"),
            ),
            ("CODEFLUX_TRUSTED_PROXIES".into(), "127.0.0.1".into()),
        ],
        addr: Some(format!("127.0.0.1:{app_port}")),
    })
    .unwrap();
    let _nginx = nginx(tls.path(), public_port, app_port);
    let rules =
        "--host-resolver-rules=MAP codeflux.test 127.0.0.1, MAP *.preview.codeflux.test 127.0.0.1"
            .to_owned();
    let (_driver, c) = browser_with(
        390,
        844,
        true,
        &[rules, "--ignore-certificate-errors".into()],
    )
    .await;
    let pid = phone_flow(&c, &public, &srv.base_url, &llm, "tls").await;
    let src = js(&c, "return document.querySelector('iframe').src").await;
    assert_eq!(
        src.as_str().unwrap(),
        format!("https://{pid}.preview.codeflux.test:{public_port}/")
    );
    // The page's own requests went through nginx with TLS, the HMR websocket as wss.
    let proto = in_frame(&c, "return location.protocol").await;
    assert_eq!(proto, json!("https:"));
    screenshot(&c, "device-tls-followup-390.png").await;
}
