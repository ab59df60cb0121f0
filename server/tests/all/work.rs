//! A run's work in the browser (issue 13): the assistant's Markdown, rendered by the server and
//! inert when hostile; the tokens and the model on the message; the steps, collapsed under the
//! message and still there after a reload, with file chips that open the Code tab; runtime
//! errors the preview reports by postMessage, offered as "Fix it"; a version whose check
//! failed, shown as a warning with its own "Fix it"; the model picker.

use std::time::Duration;

use codeflux_test_support::scripted_llm::{ScriptedLlm, Turn};
use fantoccini::{Client, Locator};
use serde_json::{Value, json};

use crate::browser::{HYDRATED, browser, js, require_site, screenshot, wait_js};
use crate::support::{call, sse_until_end, start_with_model};

/// A page whose button throws when clicked (the check never clicks, the person does).
const BOOM_APP: &str = "export default function App() {\n  return <main className=\"p-8\"><h1>WORK-MARKER</h1><button id=\"boom\" onClick={() => { throw new Error(\"PREVIEW-BOOM on click\"); }}>Boom</button></main>;\n}\n";
const TYPE_ERROR_APP: &str = "export default function App() {\n  const count: number = \"three\";\n  return <main className=\"p-8\"><h1>WORK-MARKER {count}</h1></main>;\n}\n";
const GOOD_APP: &str = "export default function App() {\n  return <main className=\"p-8\"><h1>WORK-MARKER fixed</h1></main>;\n}\n";

/// The reply of the first run: Markdown, with an XSS attempt of each kind in it.
const REPLY: &str = "I built a **habit tracker** for you:\n\n- daily check-ins\n- streaks\n\n```tsx\nconst streak = habits.filter((h) => h.done).length;\n```\n\nSee [the docs](https://react.dev).\n\n<img src=x onerror=\"window.__xss = 1\"> <script>window.__xss = 2</script> [click me](javascript:window.__xss=3) <a href=\"#\" onclick=\"window.__xss=4\">raw link</a>";

fn write(content: &str) -> Turn {
    Turn::tool(
        "createOrUpdateFiles",
        json!({"files": [{"path": "src/App.tsx", "content": content}]}),
    )
}

async fn text_of(c: &Client, selector: &str) -> String {
    js(
        c,
        &format!(
            "const e = document.querySelector({}); return e ? e.innerText : ''",
            json!(selector)
        ),
    )
    .await
    .as_str()
    .unwrap_or_default()
    .to_owned()
}

async fn last_user_message(llm: &ScriptedLlm) -> String {
    let req = llm.agent_requests().pop().unwrap();
    req.messages()
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn markdown_usage_work_log_fix_it_and_the_model_picker() {
    require_site();
    let llm = ScriptedLlm::start().await.unwrap();
    llm.push([
        Turn::TextAndTools(
            "Writing the **page** now.".into(),
            vec![(
                "createOrUpdateFiles".into(),
                json!({"files": [{"path": "src/App.tsx", "content": BOOM_APP}]}).to_string(),
            )],
        ),
        Turn::Reasoning(
            "THINKING-MARKER: the page is written.".into(),
            Box::new(Turn::text(
                "<task_summary>Built the habit page.</task_summary>",
            )),
        ),
    ]);
    llm.push_aux([Turn::text("Habit Page"), Turn::text(REPLY)]);
    let data = tempfile::tempdir().unwrap();
    let srv = start_with_model(data.path(), &llm, None);
    let base = srv.base_url.clone();
    let (status, project) = call(
        &base,
        "projects/create",
        &[("prompt", "Build a habit tracker")],
    )
    .await;
    assert_eq!(status, 200, "{project}");
    let pid = project["id"].as_str().unwrap().to_owned();
    let events = sse_until_end(&base, &pid).await;
    assert_eq!(events.last().unwrap().1, "run_finished", "{events:?}");

    // messages/get_many gives the usage, the model and the checks.
    let (_, msgs) = call(&base, "messages/get_many", &[("project_id", &pid)]).await;
    let result = &msgs.as_array().unwrap()[1];
    assert_eq!(result["usage"]["prompt_tokens"], 400, "{result}");
    assert_eq!(result["usage"]["completion_tokens"], 80, "{result}");
    assert_eq!(result["usage"]["cost_usd"], Value::Null);
    assert_eq!(result["model"], "scripted");

    let (_driver, c) = browser(1280, 800, false).await;
    c.goto(&format!("{base}/projects/{pid}")).await.unwrap();
    wait_js(&c, HYDRATED, "hydration").await;

    // Markdown, rendered and sanitized by the server.
    let md = "[data-kind=result] .cf-md";
    wait_js(
        &c,
        &format!("return !!document.querySelector('{md} strong')"),
        "the Markdown",
    )
    .await;
    assert_eq!(text_of(&c, &format!("{md} strong")).await, "habit tracker");
    assert_eq!(
        js(
            &c,
            &format!("return document.querySelectorAll('{md} li').length")
        )
        .await,
        json!(2)
    );
    assert_eq!(
        js(&c, &format!("return [...document.querySelectorAll('{md} pre.cf-code span')].some(s => s.className.includes('hl-'))")).await,
        json!(true),
        "the code block is highlighted"
    );
    assert_eq!(
        js(
            &c,
            &format!("return document.querySelector('{md} a[href=\"https://react.dev\"]').rel")
        )
        .await,
        json!("noopener noreferrer nofollow")
    );
    // The XSS attempts are inert: shown as text, never run.
    assert_eq!(
        js(&c, "return window.__xss === undefined").await,
        json!(true)
    );
    let hostile = js(&c, &format!("return document.querySelectorAll('{md} img, {md} script, {md} [onerror], {md} [onclick], {md} a[href^=javascript]').length")).await;
    assert_eq!(hostile, json!(0));
    assert!(
        text_of(&c, md)
            .await
            .contains("<script>window.__xss = 2</script>")
    );
    // Clicking the would-be links runs nothing either.
    js(&c, &format!("document.querySelectorAll('{md} a').forEach(a => {{ if (!a.href.startsWith('http')) a.click(); }}); return true")).await;
    assert_eq!(
        js(&c, "return window.__xss === undefined").await,
        json!(true)
    );

    // Tokens and the model under the message, and the project's total in the header.
    let usage = text_of(&c, "[data-kind=result] [data-usage]").await;
    assert!(
        usage.contains("480 tokens")
            && usage.contains("400 prompt / 80 completion")
            && usage.contains("scripted"),
        "{usage}"
    );

    // The steps, collapsed to one line; still there after a reload.
    for round in 0..2 {
        wait_js(
            &c,
            "return !!document.querySelector('[data-kind=result] [data-worklog] summary')",
            "the work log",
        )
        .await;
        let line = text_of(&c, "[data-kind=result] [data-worklog] summary").await;
        assert!(
            line.contains("1 file") && line.contains("0 commands") && line.contains("checked"),
            "{line}"
        );
        assert_eq!(
            js(
                &c,
                "return document.querySelector('[data-kind=result] [data-worklog]').open"
            )
            .await,
            json!(false)
        );
        if round == 0 {
            c.refresh().await.unwrap();
            wait_js(&c, HYDRATED, "hydration after the reload").await;
        }
    }
    js(
        &c,
        "document.querySelector('[data-kind=result] [data-worklog] summary').click(); return true",
    )
    .await;
    let steps = text_of(&c, "[data-kind=result] [data-worklog]").await;
    assert!(
        steps.contains("Writing the **page** now.")
            && steps.contains("Thinking")
            && steps.contains("src/App.tsx"),
        "{steps}"
    );
    assert!(steps.contains("Checked"), "the check is a step: {steps}");
    screenshot(&c, "work-log-1280.png").await;
    // A file chip opens the file in the Code tab.
    js(&c, "[...document.querySelectorAll('[data-kind=result] [data-worklog] button')].find(b => b.innerText.includes('src/App.tsx')).click(); return true").await;
    wait_js(&c, "const p = document.querySelector('pre.hl:not(.cf-code)'); return !!p && p.innerText.includes('PREVIEW-BOOM')", "the file in the Code tab").await;

    // The preview reports a runtime error by postMessage; "Fix it" sends it as a follow-up,
    // with the model picked in the picker.
    js(&c, "[...document.querySelectorAll('button[role=tab]')].find(b => b.innerText.includes('Preview')).click(); return true").await;
    let t0 = std::time::Instant::now();
    loop {
        let mut clicked = false;
        if c.clone().enter_frame(0).await.is_ok() {
            clicked = js(
                &c,
                "const b = document.getElementById('boom'); if (b) b.click(); return !!b",
            )
            .await
                == json!(true);
            c.clone().enter_parent_frame().await.unwrap();
        }
        if clicked
            && js(
                &c,
                "return !!document.querySelector('[data-preview-errors]')",
            )
            .await
                == json!(true)
        {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "no preview error reported"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let banner = text_of(&c, "[data-preview-errors]").await;
    assert!(banner.contains("PREVIEW-BOOM on click"), "{banner}");
    screenshot(&c, "preview-error-1280.png").await;

    js(&c, "const s = document.querySelector('#content-box').form.querySelector('select[name=model]'); return s.options.length").await;
    wait_js(&c, "const s = document.querySelector('#content-box').form.querySelector('select[name=model]'); return [...s.options].some(o => o.value === 'scripted-alt')", "the provider's models in the picker").await;
    js(&c, "const s = document.querySelector('#content-box').form.querySelector('select[name=model]'); s.value = 'scripted-alt'; s.dispatchEvent(new Event('change', {bubbles: true})); return true").await;
    // The fix writes a type error: the version is checked, fails, and is shown as a warning.
    llm.push([
        write(TYPE_ERROR_APP),
        Turn::text("<task_summary>Removed the throwing button.</task_summary>"),
    ]);
    llm.push_aux([Turn::text("Habit Page Two")]);
    c.find(Locator::XPath(
        "//*[@data-preview-errors]//button[contains(., 'Fix it')]",
    ))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    wait_js(&c, "return document.querySelectorAll('[data-kind=result]').length === 2 && !document.querySelector('[data-live-run]')", "the fix's version").await;
    assert!(
        last_user_message(&llm)
            .await
            .contains("PREVIEW-BOOM on click")
    );
    let models: Vec<String> = llm
        .requests()
        .iter()
        .rev()
        .take(3)
        .map(|r| r.body["model"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(models, vec!["scripted-alt"; 3], "the picked model answered");
    assert_eq!(
        js(
            &c,
            "return !!document.querySelector('[data-preview-errors]')"
        )
        .await,
        json!(false),
        "the banner is gone once sent"
    );

    let warned = "[data-kind=result][data-warned=true]";
    wait_js(
        &c,
        &format!("return !!document.querySelector('{warned}')"),
        "the warned version",
    )
    .await;
    let text = text_of(&c, warned).await;
    assert!(
        text.contains("The app still has errors")
            && text.contains("TS2322")
            && text.contains("src/App.tsx"),
        "{text}"
    );
    assert!(
        text.contains("scripted-alt"),
        "the model is on the message: {text}"
    );
    screenshot(&c, "warned-version-1280.png").await;

    // "Fix it" on the warned version sends the check's errors.
    llm.push([
        write(GOOD_APP),
        Turn::text("<task_summary>Fixed the type error.</task_summary>"),
    ]);
    llm.push_aux([
        Turn::text("Habit Page Three"),
        Turn::text("Fixed: the count is a **number** again."),
    ]);
    c.find(Locator::XPath(
        "//*[@data-warned='true']//button[contains(., 'Fix it')]",
    ))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    wait_js(&c, "return document.querySelectorAll('[data-kind=result]').length === 3 && !document.querySelector('[data-live-run]')", "the fixed version").await;
    let asked = last_user_message(&llm).await;
    assert!(
        asked.contains("TS2322") && asked.contains("src/App.tsx:2"),
        "{asked}"
    );
    wait_js(&c, "const r = [...document.querySelectorAll('[data-kind=result]')].pop(); return !!r.querySelector('[data-check=passed]') && r.dataset.warned === 'false'", "the checked version").await;

    // The same conversation on a phone.
    let (_pd, p) = browser(390, 844, true).await;
    p.goto(&format!("{base}/projects/{pid}")).await.unwrap();
    wait_js(&p, HYDRATED, "hydration on the phone").await;
    wait_js(
        &p,
        "return document.querySelectorAll('[data-worklog]').length === 3",
        "the work logs on the phone",
    )
    .await;
    js(&p, "document.querySelector('[data-worklog] summary').click(); document.querySelector('[data-worklog]').scrollIntoView(); return true").await;
    assert_eq!(
        js(
            &p,
            "return document.documentElement.scrollWidth > window.innerWidth"
        )
        .await,
        json!(false)
    );
    screenshot(&p, "work-log-390.png").await;
    js(
        &p,
        "document.querySelector('[data-warned=true]').scrollIntoView(); return true",
    )
    .await;
    screenshot(&p, "warned-version-390.png").await;
}
