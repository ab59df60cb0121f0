//! The automatic check of an app, for real: `tsc` in the sandbox, the dev server, and a page load
//! in headless Chromium inside the sandbox. A good app passes; a type error, a compile error and
//! a render-time exception each fail with the file and the message.

use codeflux_protocol::{CheckReport, CheckStatus, Template};
use codeflux_sandbox::local::{LocalConfig, LocalProvider};
use codeflux_sandbox::{Sandbox, SandboxProvider};
use uuid::Uuid;

use crate::{config, require_root};

fn item<'a>(r: &'a CheckReport, name: &str) -> &'a codeflux_protocol::CheckItem {
    r.items
        .iter()
        .find(|i| i.name == name)
        .unwrap_or_else(|| panic!("no {name} in {r:?}"))
}

async fn check(sb: &dyn Sandbox) -> CheckReport {
    sb.check().await.unwrap().expect("a local sandbox checks")
}

#[tokio::test]
async fn the_check_passes_a_good_app_and_names_each_kind_of_error() {
    require_root();
    assert!(
        std::path::Path::new(codeflux_sandbox::check::CHROMIUM).exists(),
        "the check needs Debian's chromium (cargo xtask setup installs it)"
    );
    let data = tempfile::tempdir().unwrap();
    let p = LocalProvider::new(LocalConfig {
        dev_servers: true,
        ..config(data.path())
    })
    .unwrap();
    let sb = p
        .open(Uuid::new_v4(), Template::ViteReact, None)
        .await
        .unwrap();

    let good = "export default function App() {\n  return <h1>Habits</h1>;\n}\n";
    sb.write_file("src/App.tsx", good).await.unwrap();
    let r = check(sb.as_ref()).await;
    assert!(r.passed(), "a good app passes: {r:?}");
    for name in ["type check", "dev server", "page load"] {
        assert_eq!(item(&r, name).status, CheckStatus::Passed, "{name}: {r:?}");
    }

    // A type error: tsc names the file and the line.
    sb.write_file(
        "src/App.tsx",
        "export default function App() {\n  const n: number = \"seven\";\n  return <h1>{n}</h1>;\n}\n",
    )
    .await
    .unwrap();
    let r = check(sb.as_ref()).await;
    let tc = item(&r, "type check");
    assert_eq!(tc.status, CheckStatus::Failed, "{r:?}");
    let p0 = &tc.problems[0];
    assert_eq!(p0.file.as_deref(), Some("src/App.tsx"), "{r:?}");
    assert_eq!(p0.line, Some(2), "{r:?}");
    assert!(p0.message.contains("TS2322"), "{r:?}");

    // A compile error: the page cannot load the module; the dev server says where.
    sb.write_file(
        "src/App.tsx",
        "export default function App() {\n  return <h1>Habits</h1;\n}\n",
    )
    .await
    .unwrap();
    let r = check(sb.as_ref()).await;
    assert!(!r.passed(), "{r:?}");
    let lines = r.problem_lines(20);
    assert!(lines.contains("src/App.tsx"), "the file is named: {lines}");

    // A render-time exception: only a browser sees it.
    sb.write_file(
        "src/App.tsx",
        "export default function App() {\n  const habits: string[] | undefined = (window as unknown as { none?: string[] }).none;\n  return <ul>{habits!.map((h) => <li key={h}>{h}</li>)}</ul>;\n}\n",
    )
    .await
    .unwrap();
    let r = check(sb.as_ref()).await;
    assert_eq!(item(&r, "type check").status, CheckStatus::Passed, "{r:?}");
    let page = item(&r, "page load");
    assert_eq!(page.status, CheckStatus::Failed, "{r:?}");
    let text = r.problem_lines(20);
    assert!(
        text.contains("Cannot read properties of undefined"),
        "the exception is quoted: {text}"
    );
    assert!(text.contains("blank"), "and the blank root is seen: {text}");

    // No browser process outlives a check (each would hold memory the dev server needs).
    let left = crate::sh(
        &sb,
        "n=0; for p in /proc/[0-9]*; do case \"$(tr '\\0' ' ' < $p/cmdline 2>/dev/null)\" in /usr/lib/chromium/*) n=$((n+1));; esac; done; echo CHROMIUM=$n",
    )
    .await;
    assert!(left.output.contains("CHROMIUM=0"), "{}", left.output);
}
