//! The real page in headless Chromium (Debian's chromium + chromedriver, over WebDriver).

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::support::{root, start};

/// chromedriver on a free port, killed on drop.
pub struct Driver {
    child: Child,
    url: String,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    /// Ends chromedriver and the browser it started (its own process group: killing only the
    /// driver would leave Chromium running after the test).
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A headless Chromium session; `phone` emulates a 390x844 touch screen.
pub async fn browser(width: u32, height: u32, phone: bool) -> (Driver, Client) {
    browser_with(width, height, phone, &[]).await
}

/// [`browser`] with more Chromium arguments (name mapping, certificate errors ignored).
pub async fn browser_with(
    width: u32,
    height: u32,
    phone: bool,
    extra: &[String],
) -> (Driver, Client) {
    let port = free_port();
    let child = Command::new("chromedriver")
        .process_group(0)
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
        },
        "acceptInsecureCerts": true,
    });
    if let Some(args) = caps["goog:chromeOptions"]["args"].as_array_mut() {
        args.extend(extra.iter().map(|a| json!(a)));
    }
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

pub async fn js(c: &Client, script: &str) -> Value {
    c.execute(script, vec![]).await.expect("script runs")
}

/// Polls `script` until it returns true.
pub async fn wait_js(c: &Client, script: &str, what: &str) {
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

pub async fn screenshot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("screenshot");
    std::fs::write(output_dir().join(name), png).unwrap();
}

pub fn require_site() {
    let pkg = root().join("target/site/pkg");
    assert!(
        pkg.join("frontend_bg.wasm").exists(),
        "the front end is not built in {}: run the tests with `cargo xtask test`",
        pkg.display()
    );
}

pub const HYDRATED: &str = "return document.body.dataset.hydrated === 'true'";

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
    let no_overflow = |what: &'static str| {
        let c = c.clone();
        async move {
            let width = js(&c, "return document.documentElement.scrollWidth").await;
            let viewport = js(&c, "return window.innerWidth").await;
            assert!(
                width.as_u64().unwrap() <= viewport.as_u64().unwrap(),
                "{what}: scrollWidth {width} > {viewport}"
            );
        }
    };
    c.goto(&format!("{}/", srv.base_url)).await.unwrap();
    wait_js(&c, HYDRATED, "hydration").await;
    no_overflow("home").await;
    screenshot(&c, "home-390.png").await;

    c.goto(&format!("{}/projects/{id}", srv.base_url))
        .await
        .unwrap();
    wait_js(&c, HYDRATED, "hydration").await;
    let tabs = js(&c, "return ['Chat','Preview','Code'].filter(w => [...document.querySelectorAll('nav[aria-label=Panes] button')].some(e => e.offsetParent !== null && e.innerText.trim() === w)).length").await;
    assert_eq!(
        tabs,
        json!(3),
        "the phone has a Chat / Preview / Code tab bar"
    );
    wait_js(&c, "return !!document.querySelector('textarea#content-box') && document.querySelector('textarea#content-box').offsetParent !== null", "the follow-up box in the chat pane").await;
    no_overflow("project chat").await;
    screenshot(&c, "project-390.png").await;
    for (tab, check, shot) in [
        (
            "Preview",
            "return document.querySelector('iframe').offsetParent !== null && document.querySelector('textarea#content-box').offsetParent === null",
            "project-preview-390.png",
        ),
        (
            "Code",
            "return document.body.innerText.includes('first version')",
            "project-code-390.png",
        ),
    ] {
        c.find(Locator::XPath(&format!(
            "//nav[@aria-label='Panes']//button[contains(., '{tab}')]"
        )))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
        wait_js(&c, check, tab).await;
        no_overflow(tab).await;
        screenshot(&c, shot).await;
    }
    c.close().await.unwrap();
}

/// The whole flow with the scripted model behind the real app: prompt on home, progress while
/// the run works, the generated page inside the preview iframe, a follow-up that changes it,
/// Stop, the Code tab.
#[tokio::test]
async fn ide_flow_prompt_progress_preview_follow_up_stop_code() {
    use codeflux_test_support::scripted_llm::{ScriptedLlm, Turn};
    require_site();
    let llm = ScriptedLlm::start().await.unwrap();
    let gate = std::sync::Arc::new(tokio::sync::Notify::new());
    let app = |marker: &str| {
        format!(
            "export default function App() {{\n  return <main className=\"p-8\"><h1>{marker}</h1></main>;\n}}\n"
        )
    };
    llm.push([
        Turn::TextAndTools(
            "Writing the page now.".into(),
            vec![(
                "createOrUpdateFiles".into(),
                json!({"files": [{"path": "src/App.tsx", "content": app("IDE-MARKER-ONE")}]})
                    .to_string(),
            )],
        ),
        Turn::Gated {
            turn: Box::new(Turn::text("<task_summary>A greeting page.</task_summary>")),
            at: 1,
            gate: gate.clone(),
        },
    ]);
    let data = tempfile::tempdir().unwrap();
    let srv = crate::support::start_with_model(data.path(), &llm, None);
    let (_driver, c) = browser(1280, 800, false).await;

    c.goto(&format!("{}/", srv.base_url)).await.unwrap();
    wait_js(&c, HYDRATED, "hydration").await;
    js(&c, "window.__cfNoReload = 7; return true").await;
    c.find(Locator::Css("textarea#prompt-box"))
        .await
        .unwrap()
        .send_keys("Build a page that says hello")
        .await
        .unwrap();
    wait_js(&c, "return !document.evaluate(\"//button[contains(., 'Start Creating')]\", document).iterateNext().disabled", "the button").await;
    let t0 = std::time::Instant::now();
    c.find(Locator::XPath("//button[contains(., 'Start Creating')]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_js(
        &c,
        "return /\\/projects\\/[0-9a-f-]{36}$/.test(location.pathname)",
        "the project page",
    )
    .await;
    assert_eq!(
        js(&c, "return window.__cfNoReload").await,
        json!(7),
        "no reload"
    );

    // Progress while the run works (the model is held back on its last step).
    wait_js(&c, "return document.body.innerText.includes('Wrote src/App.tsx') && document.body.innerText.includes('Writing the page now.')", "the tool call and streamed text").await;
    wait_js(
        &c,
        "return [...document.querySelectorAll('button')].some(b => b.innerText.trim() === 'Stop')",
        "the Stop button",
    )
    .await;
    screenshot(&c, "project-working-1280.png").await;
    gate.notify_waiters();
    wait_js(&c, "return document.body.innerText.includes('Counter App') && !document.querySelector('[data-live-run]')", "the finished version").await;

    // The generated page inside the preview iframe.
    let preview_has = |marker: &'static str| {
        let c = c.clone();
        async move {
            let t = std::time::Instant::now();
            while t.elapsed() < Duration::from_secs(120) {
                c.enter_frame(0).await.unwrap();
                let text = c
                    .execute(
                        "return document.body ? document.body.innerText : ''",
                        vec![],
                    )
                    .await
                    .unwrap();
                c.enter_parent_frame().await.unwrap();
                if text.as_str().is_some_and(|t| t.contains(marker)) {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            false
        }
    };
    assert!(
        preview_has("IDE-MARKER-ONE").await,
        "the generated page shows in the preview"
    );
    println!("click to preview: {:.1} s", t0.elapsed().as_secs_f64());
    screenshot(&c, "project-1280.png").await;

    // A follow-up changes the preview.
    llm.push([
        Turn::tool(
            "editFile",
            json!({"path": "src/App.tsx", "search": "IDE-MARKER-ONE", "replace": "IDE-MARKER-TWO"}),
        ),
        Turn::text("<task_summary>Changed the heading.</task_summary>"),
    ]);
    c.find(Locator::Css("textarea#content-box"))
        .await
        .unwrap()
        .send_keys("Change the heading\u{E007}")
        .await
        .unwrap();
    assert!(
        preview_has("IDE-MARKER-TWO").await,
        "the follow-up shows in the preview"
    );
    // The run ends after its check.
    wait_js(&c, "return document.querySelectorAll('[data-kind=result]').length === 2 && !document.querySelector('[data-live-run]')", "the follow-up's reply").await;

    // Stop a run.
    let gate2 = std::sync::Arc::new(tokio::sync::Notify::new());
    llm.push([Turn::Gated {
        turn: Box::new(Turn::text("this takes forever")),
        at: 2,
        gate: gate2.clone(),
    }]);
    c.find(Locator::Css("textarea#content-box"))
        .await
        .unwrap()
        .send_keys("Something slow\u{E007}")
        .await
        .unwrap();
    wait_js(
        &c,
        "return [...document.querySelectorAll('button')].some(b => b.innerText.trim() === 'Stop')",
        "the Stop button",
    )
    .await;
    c.find(Locator::XPath("//button[normalize-space(.)='Stop']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_js(&c, "return document.body.innerText.includes('Stopped.') && ![...document.querySelectorAll('button')].some(b => b.innerText.trim() === 'Stop')", "the stopped run").await;
    gate2.notify_waiters();

    // The code of the version, highlighted.
    c.find(Locator::XPath("//button[@role='tab'][contains(., 'Code')]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_js(&c, "return [...document.querySelectorAll('pre.hl span')].some(s => s.className.includes('hl-') ) && document.querySelector('pre.hl').innerText.includes('IDE-MARKER-TWO')", "the highlighted code").await;
    screenshot(&c, "code-1280.png").await;
    let zip = crate::support::http()
        .get(format!(
            "{}{}",
            srv.base_url,
            js(
                &c,
                "return document.querySelector('a[download]').getAttribute('href')"
            )
            .await
            .as_str()
            .unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(zip.headers()["content-type"], "application/zip");
    let bytes = zip.bytes().await.unwrap();
    assert!(bytes.starts_with(b"PK"), "a zip archive");
    c.close().await.unwrap();
}

/// With accounts on: a signed-out visitor is sent to sign-in; signing up (the first account,
/// the admin) goes back to where they were; the settings page makes a token and an invite and
/// signs out; signing in returns to the page asked for. Desktop and phone.
#[tokio::test]
async fn accounts_sign_up_settings_sign_out_and_back() {
    require_site();
    let data = tempfile::tempdir().unwrap();
    let srv = codeflux_test_support::ServerProcess::start(codeflux_test_support::ServerOptions {
        binary: crate::support::binary(),
        workdir: root(),
        data_dir: data.path().to_path_buf(),
        env: vec![("CODEFLUX_AUTH".into(), "on".into())],
        addr: None,
    })
    .unwrap();
    let base = srv.base_url.clone();
    for (w, h, phone, tag) in [(1280, 800, false, "1280"), (390, 844, true, "390")] {
        let (_driver, c) = browser(w, h, phone).await;
        let no_overflow = |what: String| {
            let c = c.clone();
            async move {
                let width = js(&c, "return document.documentElement.scrollWidth").await;
                let viewport = js(&c, "return window.innerWidth").await;
                assert!(
                    width.as_u64().unwrap() <= viewport.as_u64().unwrap(),
                    "{what}: scrollWidth {width} > {viewport}"
                );
            }
        };
        // Signed out: the settings page sends to sign-in, with the way back.
        c.goto(&format!("{base}/settings")).await.unwrap();
        wait_js(
            &c,
            "return location.pathname === '/sign-in' && location.search.includes('next=/settings')",
            "the sign-in page",
        )
        .await;
        wait_js(&c, HYDRATED, "hydration").await;
        no_overflow(format!("sign-in {tag}")).await;
        screenshot(&c, &format!("sign-in-{tag}.png")).await;
        let email = format!("person{tag}@test.dev");
        if tag == "1280" {
            // The first account: sign up from the sign-in page's link.
            c.find(Locator::XPath("//a[contains(., 'Create one')]"))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
            wait_js(
                &c,
                "return location.pathname === '/sign-up'",
                "the sign-up page",
            )
            .await;
            wait_js(&c, HYDRATED, "hydration").await;
            screenshot(&c, &format!("sign-up-{tag}.png")).await;
            c.find(Locator::Css("input[name=email]"))
                .await
                .unwrap()
                .send_keys(&email)
                .await
                .unwrap();
            c.find(Locator::Css("input[name=password]"))
                .await
                .unwrap()
                .send_keys("short")
                .await
                .unwrap();
            c.find(Locator::Css("form button[type=submit]"))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
            // The browser's own check (minlength) or ours: no account, a reason shown.
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert!(js(&c, "return location.pathname").await == json!("/sign-up"));
            let pw = c.find(Locator::Css("input[name=password]")).await.unwrap();
            pw.clear().await.unwrap();
            pw.send_keys("a-long-password-1").await.unwrap();
            c.find(Locator::Css("form button[type=submit]"))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
        } else {
            // The phone signs in to the same account.
            let email = "person1280@test.dev";
            c.find(Locator::Css("input[name=email]"))
                .await
                .unwrap()
                .send_keys(email)
                .await
                .unwrap();
            c.find(Locator::Css("input[name=password]"))
                .await
                .unwrap()
                .send_keys("wrong-password")
                .await
                .unwrap();
            c.find(Locator::Css("form button[type=submit]"))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
            wait_js(
                &c,
                "return document.body.innerText.includes('Wrong email or password')",
                "the refusal",
            )
            .await;
            let pw = c.find(Locator::Css("input[name=password]")).await.unwrap();
            pw.clear().await.unwrap();
            pw.send_keys("a-long-password-1").await.unwrap();
            c.find(Locator::Css("form button[type=submit]"))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
        }
        // Back where they were headed, signed in.
        wait_js(&c, "return location.pathname === '/settings' && !!document.querySelector('[data-testid=account-email]')", "the settings page").await;
        wait_js(&c, HYDRATED, "hydration").await;
        wait_js(
            &c,
            "return !!document.querySelector('[data-testid=account-link]')",
            "the account link in the top bar",
        )
        .await;
        // A token, shown once.
        c.find(Locator::Css("input[name=name]"))
            .await
            .unwrap()
            .send_keys(&format!("script {tag}"))
            .await
            .unwrap();
        c.find(Locator::XPath("//button[contains(., 'Create token')]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_js(&c, "return /^cf_[0-9a-f]{64}$/.test((document.querySelector('[data-testid=new-token]')||{}).innerText||'')", "the new token").await;
        wait_js(
            &c,
            &format!("return document.body.innerText.includes('script {tag}')"),
            "the token in the list",
        )
        .await;
        // An invite (the admin).
        c.find(Locator::XPath("//button[contains(., 'Create invite')]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_js(&c, "return ((document.querySelector('[data-testid=new-invite]')||{}).innerText||'').includes('/sign-up?invite=')", "the invite link").await;
        no_overflow(format!("settings {tag}")).await;
        screenshot(&c, &format!("settings-{tag}.png")).await;
        // Sign out: back to sign-in; the settings are closed again.
        js(&c, "window.scrollTo(0, 0); return true").await;
        c.find(Locator::XPath("//button[normalize-space(.)='Sign out']"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_js(
            &c,
            "return location.pathname === '/sign-in'",
            "the sign-in page after signing out",
        )
        .await;
        c.goto(&format!("{base}/settings")).await.unwrap();
        wait_js(
            &c,
            "return location.pathname === '/sign-in'",
            "settings closed after signing out",
        )
        .await;
    }
}

/// What a finger can hit: buttons, tabs and links (but links inside running text) at least
/// 44x44 px; no horizontal scroll at 360 px.
const SMALL_TARGETS: &str = r#"
    const out = [];
    for (const e of document.querySelectorAll("button, [role=button], [role=tab], a[href], summary, select")) {
      const r = e.getBoundingClientRect();
      const cs = getComputedStyle(e);
      if (r.width <= 2 || r.height <= 2 || cs.visibility === "hidden" || e.closest("[aria-hidden=true]")) continue;
      if (e.tagName === "A" && e.closest("p, li")) continue;
      if (r.width < 44 || r.height < 44)
        out.push(`${(e.getAttribute("aria-label") || e.innerText || e.tagName).trim().replace(/\s+/g, " ").slice(0, 24)} ${Math.round(r.width)}x${Math.round(r.height)}`);
    }
    return out;"#;

#[tokio::test]
async fn phone_touch_targets_manifest_and_the_qr_code() {
    require_site();
    let data = tempfile::tempdir().unwrap();
    let srv = start(data.path(), None, None);
    let (_, p) = crate::support::call(
        &srv.base_url,
        "projects/create",
        &[("prompt", "A small app")],
    )
    .await;
    let id = p["id"].as_str().unwrap().to_owned();
    crate::support::sse_until_end(&srv.base_url, &id).await;
    for (w, h) in [(390, 844), (360, 740)] {
        let (_driver, c) = browser(w, h, true).await;
        let mut small = Vec::new();
        c.goto(&format!("{}/", srv.base_url)).await.unwrap();
        wait_js(&c, HYDRATED, "hydration").await;
        let found = js(&c, SMALL_TARGETS).await;
        small.extend(
            found
                .as_array()
                .unwrap()
                .iter()
                .map(|v| format!("home: {v}")),
        );
        let overflow = js(
            &c,
            "return document.documentElement.scrollWidth > window.innerWidth",
        )
        .await;
        assert_eq!(overflow, json!(false), "home scrolls sideways at {w} px");
        c.goto(&format!("{}/projects/{id}", srv.base_url))
            .await
            .unwrap();
        wait_js(&c, HYDRATED, "hydration").await;
        for pane in ["Chat", "Preview", "Code"] {
            js(&c, &format!("[...document.querySelectorAll('nav[aria-label=Panes] button')].find(b => b.innerText.trim() === '{pane}').click(); return true")).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            let found = js(&c, SMALL_TARGETS).await;
            small.extend(
                found
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| format!("{pane}: {v}")),
            );
            let overflow = js(
                &c,
                "return document.documentElement.scrollWidth > window.innerWidth",
            )
            .await;
            assert_eq!(overflow, json!(false), "{pane} scrolls sideways at {w} px");
        }
        assert!(small.is_empty(), "targets under 44 px at {w}: {small:?}");
        if w == 390 {
            // The web app manifest, installable.
            let man = js(&c, "return fetch(document.querySelector('link[rel=manifest]').href).then(r => r.json())").await;
            assert_eq!(man["display"], "standalone");
            assert!(
                man["icons"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|i| i["sizes"] == "512x512")
            );
            let icon = js(&c, "return fetch('/icon-512.png').then(r => r.status + ' ' + r.headers.get('content-type'))").await;
            assert_eq!(icon, json!("200 image/png"));
            // "Open on your phone": a QR code of the project's public address.
            js(&c, "[...document.querySelectorAll('nav[aria-label=Panes] button')].find(b => b.innerText.trim() === 'Chat').click(); return true").await;
            c.find(Locator::Css("button[aria-label*='phone']"))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
            wait_js(&c, "const s = document.querySelector('[data-testid=qr] svg'); return !!s && s.getBoundingClientRect().width >= 150", "the QR code").await;
            let text = js(
                &c,
                "return document.querySelector('[role=dialog]').innerText",
            )
            .await;
            assert!(
                text.as_str().unwrap().contains(&format!("/projects/{id}")),
                "{text}"
            );
            screenshot(&c, "qr-390.png").await;
        }
    }
}
