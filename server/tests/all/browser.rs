//! The real page in headless Chromium (Debian's chromium + chromedriver, over WebDriver).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::support::{root, start};

/// chromedriver on a free port, killed on drop.
struct Driver {
    child: Child,
    url: String,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A headless Chromium session; `phone` emulates a 390x844 touch screen.
async fn browser(width: u32, height: u32, phone: bool) -> (Driver, Client) {
    let port = free_port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver (package chromium-driver; `cargo xtask setup` installs it)");
    let profile = tempfile::tempdir().unwrap();
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _profile: profile,
    };
    let mut caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--disable-dev-shm-usage",
                format!("--window-size={width},{height}"),
                format!("--user-data-dir={}", driver._profile.path().display()),
            ],
        }
    });
    if phone {
        caps["goog:chromeOptions"]["mobileEmulation"] = json!({
            "deviceMetrics": { "width": width, "height": height, "pixelRatio": 2.0, "touch": true, "mobile": true }
        });
    }
    let caps = match caps {
        Value::Object(m) => m,
        _ => unreachable!(),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(&driver.url)
            .await
        {
            Ok(client) => return (driver, client),
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("could not start a browser session: {e}"),
        }
    }
}

async fn js(c: &Client, script: &str) -> Value {
    c.execute(script, vec![]).await.expect("script runs")
}

/// Polls `script` until it returns true.
async fn wait_js(c: &Client, script: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if js(c, script).await == Value::Bool(true) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let body = js(c, "return document.body.innerText").await;
    panic!("timed out waiting for {what}; page text: {body}");
}

fn output_dir() -> PathBuf {
    let dir = root()
        .join("target")
        .join("test-output")
        .join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn screenshot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("screenshot");
    std::fs::write(output_dir().join(name), png).unwrap();
}

fn require_site() {
    let pkg = root().join("target/site/pkg");
    assert!(
        pkg.join("frontend_bg.wasm").exists(),
        "the front end is not built in {}: run the tests with `cargo xtask test`",
        pkg.display()
    );
}

const HYDRATED: &str = "return document.body.dataset.hydrated === 'true'";

#[tokio::test]
async fn home_hydrates_and_creating_a_project_lands_on_its_page() {
    require_site();
    let data = tempfile::tempdir().unwrap();
    let srv = start(data.path(), None, None);
    let (_driver, c) = browser(1280, 800, false).await;

    c.goto(&format!("{}/", srv.base_url)).await.unwrap();
    wait_js(&c, HYDRATED, "hydration").await;
    screenshot(&c, "home-empty-1280.png").await;
    // A marker that a full page load would wipe out.
    js(&c, "window.__cfNoReload = 42; return true").await;

    let button = c
        .find(Locator::XPath("//button[contains(., 'Start Creating')]"))
        .await
        .unwrap();
    wait_js(
        &c,
        "return document.evaluate(\"//button[contains(., 'Start Creating')]\", document).iterateNext().disabled",
        "the button to be disabled while the prompt is empty",
    )
    .await;

    let prompt = "Build a habit tracker with dark mode";
    let textarea = c.find(Locator::Css("textarea#prompt-box")).await.unwrap();
    textarea.send_keys(prompt).await.unwrap();
    wait_js(
        &c,
        "return !document.evaluate(\"//button[contains(., 'Start Creating')]\", document).iterateNext().disabled",
        "the button to enable",
    )
    .await;
    // Pick the Next.js template, then create.
    c.find(Locator::XPath(
        "//button[@role='radio'][contains(., 'Next.js')]",
    ))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    button.click().await.unwrap();

    wait_js(
        &c,
        "return /\\/projects\\/[0-9a-f-]{36}$/.test(location.pathname)",
        "the project page",
    )
    .await;
    wait_js(
        &c,
        &format!("return document.body.innerText.includes({})", json!(prompt)),
        "the prompt on the project page",
    )
    .await;
    assert_eq!(
        js(&c, "return window.__cfNoReload").await,
        json!(42),
        "no full page reload"
    );
    let text = js(&c, "return document.body.innerText").await;
    assert!(
        text.as_str().unwrap().contains("Next.js"),
        "template badge: {text}"
    );
    screenshot(&c, "project-1280.png").await;

    // A follow-up: Enter sends, the message appears, still no reload.
    let follow = c.find(Locator::Css("textarea#content-box")).await.unwrap();
    follow
        .send_keys("Add a weekly overview\u{E007}")
        .await
        .unwrap();
    wait_js(
        &c,
        "return [...document.querySelectorAll('[data-role=user]')].some(e => e.innerText.includes('Add a weekly overview') && !e.classList.contains('opacity-60'))",
        "the stored follow-up",
    )
    .await;
    assert_eq!(js(&c, "return window.__cfNoReload").await, json!(42));
    let value = js(
        &c,
        "return document.querySelector('textarea#content-box').value",
    )
    .await;
    assert_eq!(value, json!(""), "the box is cleared after sending");

    // Back home (client-side), the project is listed.
    c.find(Locator::Css("a[aria-label='Back to home']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_js(&c, "return location.pathname === '/' && document.body.innerText.toLowerCase().includes('your projects')", "home").await;
    wait_js(
        &c,
        &format!("return document.body.innerText.includes({})", json!(prompt)),
        "the project listed",
    )
    .await;
    screenshot(&c, "home-1280.png").await;
    c.close().await.unwrap();
}

#[tokio::test]
async fn phone_width_has_no_horizontal_overflow() {
    require_site();
    let data = tempfile::tempdir().unwrap();
    let srv = start(data.path(), None, None);
    let long = "A very long prompt without spaces: ".to_owned() + &"x".repeat(400);
    let (_, p) = crate::support::call(&srv.base_url, "projects/create", &[("prompt", &long)]).await;
    let id = p["id"].as_str().unwrap().to_owned();
    let (_driver, c) = browser(390, 844, true).await;
    for (path, shot) in [
        ("/".to_owned(), "home-390.png"),
        (format!("/projects/{id}"), "project-390.png"),
    ] {
        c.goto(&format!("{}{path}", srv.base_url)).await.unwrap();
        wait_js(&c, HYDRATED, "hydration").await;
        let width = js(&c, "return document.documentElement.scrollWidth").await;
        let viewport = js(&c, "return window.innerWidth").await;
        assert!(
            width.as_u64().unwrap() <= viewport.as_u64().unwrap(),
            "{path}: scrollWidth {width} > {viewport}"
        );
        screenshot(&c, shot).await;
    }
    c.close().await.unwrap();
}
