//! The automatic check of a project's app, run inside its sandbox (as the project's uid, under
//! its limits): the template's type check, and a load of the preview page in a headless
//! Chromium that reports uncaught exceptions, unhandled rejections, console errors, failed
//! module loads, an error overlay and a blank root. Nobody's browser is involved.
//!
//! The page load is driven by a small Node script over the Chrome DevTools Protocol (Node 20's
//! WebSocket, no package needed), passed inline: nothing is written into the workspace.

use codeflux_protocol::{CheckItem, CheckStatus, Problem};

/// Chromium's real binary (Debian's `/usr/bin/chromium` is a wrapper reading /etc files the
/// sandbox does not have).
pub const CHROMIUM: &str = "/usr/lib/chromium/chromium";

/// Problems kept per check.
const MAX_PROBLEMS: usize = 20;
/// Characters kept per message.
const MAX_MESSAGE: usize = 400;

/// The Node script: starts Chromium, opens the URL (argv[1]), waits for the load plus a
/// settle time, prints one JSON line.
const PAGE_SCRIPT: &str = r#"
const { spawn } = require('child_process');
const url = process.argv[1];
const out = { exceptions: [], console: [], log: [], loaded: false, evaluated: null };
const cut = (s) => String(s == null ? '' : s).slice(0, 400);
const add = (list, item) => { if (list.length < 20) list.push(item); };
const dir = '/tmp/.cf-check-' + process.pid;
const chrome = spawn(process.env.CF_CHROMIUM, ['--headless', '--no-sandbox', '--disable-gpu',
  '--no-first-run', '--disable-dev-shm-usage', '--disable-background-networking', '--disable-extensions',
  '--disable-component-update', '--disable-sync', '--mute-audio', '--no-default-browser-check',
  '--no-zygote', '--renderer-process-limit=1', '--disable-site-isolation-trials',
  '--disable-features=site-per-process,Translate,OptimizationHints,MediaRouter,AutofillServerCommunication',
  '--remote-debugging-address=127.0.0.1', '--remote-debugging-port=0', '--user-data-dir=' + dir,
  'about:blank'], { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
let finished = false;
const done = () => {
  if (finished) return; finished = true;
  try { process.kill(-chrome.pid, 'SIGKILL'); } catch (e) {}
  try { chrome.kill('SIGKILL'); } catch (e) {}
  try { require('fs').rmSync(dir, { recursive: true, force: true }); } catch (e) {}
  process.stdout.write('CF-CHECK ' + JSON.stringify(out) + '\n', () => process.exit(0));
};
setTimeout(() => { out.timeout = true; done(); }, 40000);
chrome.on('exit', () => { if (!out.ws) { out.error = 'chromium exited at once'; done(); } });
let buf = '';
chrome.stderr.on('data', (d) => {
  buf = (buf + d).slice(-8000);
  const m = buf.match(/DevTools listening on (ws:\/\/\S+)/);
  if (m && !out.ws) { out.ws = true; run(m[1]).catch((e) => { out.error = cut(e); done(); }); }
});
async function run(wsUrl) {
  const ws = new WebSocket(wsUrl);
  let id = 0; const pending = new Map(); let onLoad = null;
  const send = (method, params, sessionId) => new Promise((res) => {
    const i = ++id; pending.set(i, res); ws.send(JSON.stringify({ id: i, method, params: params || {}, sessionId }));
  });
  ws.onmessage = (ev) => {
    const m = JSON.parse(ev.data);
    if (m.id && pending.has(m.id)) { pending.get(m.id)(m.result || { error: m.error }); pending.delete(m.id); return; }
    const p = m.params || {};
    if (m.method === 'Runtime.exceptionThrown') {
      const d = p.exceptionDetails || {};
      const text = (d.exception && d.exception.description) || d.text || 'exception';
      add(out.exceptions, { text: cut(text), url: d.url || '', line: d.lineNumber == null ? null : d.lineNumber + 1 });
    } else if (m.method === 'Runtime.consoleAPICalled' && (p.type === 'error' || p.type === 'assert')) {
      const text = (p.args || []).map((a) => a.value !== undefined ? a.value : (a.description || '')).join(' ');
      const f = ((p.stackTrace || {}).callFrames || [])[0] || {};
      add(out.console, { text: cut(text), url: f.url || '', line: f.lineNumber == null ? null : f.lineNumber + 1 });
    } else if (m.method === 'Log.entryAdded' && p.entry && p.entry.level === 'error') {
      add(out.log, { text: cut(p.entry.text), url: p.entry.url || '', line: p.entry.lineNumber == null ? null : p.entry.lineNumber + 1 });
    } else if (m.method === 'Page.loadEventFired') {
      out.loaded = true; if (onLoad) onLoad();
    }
  };
  await new Promise((r, j) => { ws.onopen = r; ws.onerror = () => j(new Error('devtools connection failed')); });
  const t = await send('Target.createTarget', { url: 'about:blank' });
  const s = await send('Target.attachToTarget', { targetId: t.targetId, flatten: true });
  const sid = s.sessionId;
  await send('Runtime.enable', {}, sid); await send('Log.enable', {}, sid); await send('Page.enable', {}, sid);
  const loaded = new Promise((r) => { onLoad = r; setTimeout(r, 20000); });
  await send('Page.navigate', { url }, sid);
  await loaded;
  await new Promise((r) => setTimeout(r, 2500));
  const e = await send('Runtime.evaluate', { returnByValue: true, expression:
    "JSON.stringify({ root: (function(){ var r = document.getElementById('root'); return r ? r.children.length : null; })()," +
    " elements: document.body ? document.body.querySelectorAll('*:not(script):not(style):not(link)').length : 0," +
    " text: document.body ? document.body.innerText.trim().length : 0," +
    " overlay: !!document.querySelector('vite-error-overlay, nextjs-portal [data-nextjs-dialog], [data-nextjs-error-overlay]') })" }, sid);
  try { out.evaluated = JSON.parse(((e.result || {}).value) || 'null'); } catch (x) {}
  done();
}
"#;

/// The shell command that loads `url` in Chromium inside the sandbox and prints one
/// `CF-CHECK {json}` line.
pub fn page_command(url: &str) -> String {
    let script = PAGE_SCRIPT.replace('\'', "'\\''");
    // Whatever happens to the script (its own timeout, a kill, no process left to fork), no
    // browser process outlives the check: each would hold memory the app's dev server needs.
    format!(
        "CF_CHROMIUM={CHROMIUM} node --experimental-websocket --no-warnings -e '{script}' '{}'; s=$?; {KILL_BROWSERS}; exit $s",
        url.replace('\'', "")
    )
}

/// Kills every Chromium process in the sandbox (only the check runs a browser there; it runs
/// when no agent command is running).
const KILL_BROWSERS: &str = "for p in /proc/[0-9]*; do case \"$(tr '\\0' ' ' < $p/cmdline 2>/dev/null)\" in /usr/lib/chromium/chromium*) kill -9 ${p#/proc/} 2>/dev/null;; esac; done";

fn clip(s: &str) -> String {
    let s = s.trim();
    match s.char_indices().nth(MAX_MESSAGE) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// A URL of the dev server as a project path (`http://127.0.0.1:5173/src/App.tsx?t=1` ->
/// `src/App.tsx`); None for URLs outside the project (packages, Chromium's own pages).
fn project_path(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let path = rest.split_once('/').map_or("", |(_, p)| p);
    let path = path.split(['?', '#']).next().unwrap_or_default();
    if path.is_empty()
        || path.starts_with("node_modules")
        || path.starts_with('@')
        || path.starts_with("_next/static/chunks/node_modules")
        || url.starts_with("chrome")
    {
        return None;
    }
    Some(path.to_owned())
}

/// Reads the page script's output into the "page load" check.
pub fn parse_page(output: &str, ms: u64) -> CheckItem {
    let item = |status, problems, note: Option<String>| CheckItem {
        name: "page load".into(),
        status,
        problems,
        note,
        ms,
    };
    let Some(json) = output
        .lines()
        .find_map(|l| l.trim().strip_prefix("CF-CHECK "))
        .and_then(|j| serde_json::from_str::<serde_json::Value>(j).ok())
    else {
        let tail: String = output
            .chars()
            .rev()
            .take(300)
            .collect::<String>()
            .chars()
            .rev()
            .collect();
        return item(
            CheckStatus::Skipped,
            Vec::new(),
            Some(format!(
                "the page could not be loaded in a browser: {}",
                clip(&tail)
            )),
        );
    };
    if let Some(e) = json.get("error").and_then(|e| e.as_str()) {
        return item(
            CheckStatus::Skipped,
            Vec::new(),
            Some(format!("the browser did not run: {}", clip(e))),
        );
    }
    let mut problems = Vec::new();
    let mut push = |v: &serde_json::Value, prefix: &str| {
        let text = v.get("text").and_then(|t| t.as_str()).unwrap_or_default();
        if text.is_empty() || problems.len() >= MAX_PROBLEMS {
            return;
        }
        let url = v.get("url").and_then(|u| u.as_str()).unwrap_or_default();
        let file = project_path(url);
        let line = if file.is_some() {
            v.get("line").and_then(|l| l.as_u64()).map(|l| l as u32)
        } else {
            None
        };
        problems.push(Problem {
            file,
            line,
            message: clip(&format!("{prefix}{text}")),
        });
    };
    for list in ["exceptions", "console", "log"] {
        let prefix = match list {
            "exceptions" => "Uncaught: ",
            "console" => "Console error: ",
            _ => "",
        };
        for v in json
            .get(list)
            .and_then(|l| l.as_array())
            .into_iter()
            .flatten()
        {
            // Chromium reports uncaught exceptions on the console too: keep them once.
            let text = v.get("text").and_then(|t| t.as_str()).unwrap_or_default();
            if list != "exceptions" && text.starts_with("Uncaught") {
                continue;
            }
            push(
                v,
                if text.starts_with("Uncaught") {
                    ""
                } else {
                    prefix
                },
            );
        }
    }
    if json.get("timeout").and_then(|t| t.as_bool()) == Some(true) {
        problems.push(Problem {
            file: None,
            line: None,
            message: "the page did not finish loading within 40 s".into(),
        });
    }
    if let Some(ev) = json.get("evaluated").filter(|e| !e.is_null()) {
        if ev.get("overlay").and_then(|o| o.as_bool()) == Some(true) {
            problems.push(Problem {
                file: None,
                line: None,
                message: "the dev server shows an error overlay on the page".into(),
            });
        }
        let root_empty = ev.get("root").and_then(|r| r.as_u64()) == Some(0);
        let nothing = ev.get("text").and_then(|t| t.as_u64()) == Some(0)
            && ev.get("elements").and_then(|t| t.as_u64()).unwrap_or(0) <= 1;
        if root_empty || nothing {
            problems.push(Problem {
                file: None,
                line: None,
                message: if root_empty {
                    "the page is blank: nothing was rendered into #root".into()
                } else {
                    "the page is blank: it shows no text and no elements".into()
                },
            });
        }
    }
    let status = if problems.is_empty() {
        CheckStatus::Passed
    } else {
        CheckStatus::Failed
    };
    item(status, problems, None)
}

/// The type check command: the project's `typecheck` script, else `tsc --noEmit` (exit 97:
/// neither exists).
pub fn typecheck_command(package_json: &str) -> &'static str {
    let has_script = serde_json::from_str::<serde_json::Value>(package_json)
        .ok()
        .and_then(|v| v.pointer("/scripts/typecheck").map(|_| ()))
        .is_some();
    if has_script {
        "npm run --silent typecheck 2>&1"
    } else {
        "test -f node_modules/typescript/bin/tsc || exit 97; node node_modules/typescript/bin/tsc --noEmit 2>&1"
    }
}

/// How long the type check may take.
pub const TYPECHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(180);

/// The "type check" item from what [`typecheck_command`] gave.
pub fn typecheck_item(r: &crate::CommandResult, ms: u64) -> CheckItem {
    if r.exit_code == Some(97) {
        return skipped(
            "type check",
            "the project has no typecheck script and no TypeScript",
        );
    }
    if r.timed_out {
        return failed("type check", "the type check took more than 3 minutes", ms);
    }
    parse_typecheck(&r.output, r.exit_code, ms)
}

/// A check that could not run, and why.
pub fn skipped(name: &str, note: &str) -> CheckItem {
    CheckItem {
        name: name.into(),
        status: CheckStatus::Skipped,
        problems: Vec::new(),
        note: Some(note.into()),
        ms: 0,
    }
}

/// A check that failed with one problem.
pub fn failed(name: &str, message: &str, ms: u64) -> CheckItem {
    CheckItem {
        name: name.into(),
        status: CheckStatus::Failed,
        problems: vec![Problem {
            file: None,
            line: None,
            message: clip(message),
        }],
        note: None,
        ms,
    }
}

/// Reads `tsc` output (`src/App.tsx(2,9): error TS2322: Type ...`) into the "type check".
pub fn parse_typecheck(output: &str, exit_code: Option<i32>, ms: u64) -> CheckItem {
    let mut problems = Vec::new();
    for line in output.lines() {
        let line = line.trim();
        let Some((loc, rest)) = line.split_once("): error ") else {
            continue;
        };
        let Some((file, pos)) = loc.rsplit_once('(') else {
            continue;
        };
        let lineno = pos.split(',').next().and_then(|l| l.parse::<u32>().ok());
        if problems.len() < MAX_PROBLEMS {
            problems.push(Problem {
                file: Some(file.trim_start_matches("./").to_owned()),
                line: lineno,
                message: clip(rest),
            });
        }
    }
    if problems.is_empty() && exit_code.is_some_and(|c| c != 0) {
        // An error in another shape (a config error, a missing tsconfig).
        let text: Vec<&str> = output
            .lines()
            .filter(|l| !l.trim().is_empty())
            .take(8)
            .collect();
        problems.push(Problem {
            file: None,
            line: None,
            message: clip(&format!("the type check failed: {}", text.join(" | "))),
        });
    }
    CheckItem {
        name: "type check".into(),
        status: if problems.is_empty() {
            CheckStatus::Passed
        } else {
            CheckStatus::Failed
        },
        problems,
        note: None,
        ms,
    }
}

/// Errors the dev server printed while the check ran (compile errors of the files the page
/// loaded), from its new output lines.
pub fn parse_dev_log(lines: &[String], ms: u64) -> CheckItem {
    let mut problems: Vec<Problem> = Vec::new();
    for l in lines {
        let low = l.to_lowercase();
        if !(low.contains("error") || low.contains("failed to")) || low.contains("[codeflux]") {
            continue;
        }
        let file = l
            .split_whitespace()
            .find(|w| w.contains("src/") || w.contains("app/"))
            .map(|w| {
                let w = w.trim_matches(|c: char| c == '"' || c == '\'' || c == ':' || c == ',');
                let w = w.split_once("/workspace/").map_or(w, |(_, r)| r);
                w.split(':')
                    .next()
                    .unwrap_or(w)
                    .trim_start_matches('/')
                    .to_owned()
            });
        if problems.len() < MAX_PROBLEMS && !problems.iter().any(|p| p.message == clip(l)) {
            problems.push(Problem {
                file,
                line: None,
                message: clip(l),
            });
        }
    }
    CheckItem {
        name: "dev server".into(),
        status: if problems.is_empty() {
            CheckStatus::Passed
        } else {
            CheckStatus::Failed
        },
        problems,
        note: None,
        ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsc_output_is_read() {
        let out =
            "src/App.tsx(2,9): error TS2322: Type 'string' is not assignable to type 'number'.\n";
        let c = parse_typecheck(out, Some(2), 5);
        assert_eq!(c.status, CheckStatus::Failed);
        assert_eq!(c.problems[0].file.as_deref(), Some("src/App.tsx"));
        assert_eq!(c.problems[0].line, Some(2));
        assert!(c.problems[0].message.starts_with("TS2322"));
        assert_eq!(parse_typecheck("", Some(0), 1).status, CheckStatus::Passed);
        assert_eq!(
            parse_typecheck("error: no tsconfig", Some(1), 1).status,
            CheckStatus::Failed
        );
    }

    #[test]
    fn page_output_is_read() {
        let out = r#"noise
CF-CHECK {"exceptions":[{"text":"Error: ACC-BOOM\n    at App","url":"http://127.0.0.1:5173/src/App.tsx?t=1","line":3}],"console":[{"text":"Uncaught Error: ACC-BOOM","url":"","line":null},{"text":"Warning: x","url":"http://127.0.0.1:5173/node_modules/.vite/deps/react.js","line":9}],"log":[],"loaded":true,"evaluated":{"root":0,"elements":2,"text":0,"overlay":false}}"#;
        let c = parse_page(out, 10);
        assert_eq!(c.status, CheckStatus::Failed);
        assert_eq!(c.problems[0].file.as_deref(), Some("src/App.tsx"));
        assert_eq!(c.problems[0].line, Some(3));
        assert!(c.problems.iter().any(|p| p.message.contains("blank")));
        assert!(
            c.problems
                .iter()
                .any(|p| p.message.contains("Warning: x") && p.file.is_none())
        );
        let ok = r#"CF-CHECK {"exceptions":[],"console":[],"log":[],"loaded":true,"evaluated":{"root":1,"elements":5,"text":12,"overlay":false}}"#;
        assert_eq!(parse_page(ok, 1).status, CheckStatus::Passed);
        assert_eq!(parse_page("garbage", 1).status, CheckStatus::Skipped);
    }
}
