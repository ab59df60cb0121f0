//! Runtimes' lifecycle: idle stop and revive, the races between stopping and using, failed
//! creations, what a dead server left behind, the cap on live sandboxes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use codeflux_protocol::Template;
use codeflux_sandbox::cgroup::CgroupSupport;
use codeflux_sandbox::local::{LocalConfig, LocalProvider, SetupStep};
use codeflux_sandbox::{SandboxError, SandboxProvider};
use uuid::Uuid;

use crate::{config, require_root, sh, wait_until};

#[tokio::test]
async fn an_unused_sandbox_stops_and_revives_from_the_given_files() {
    require_root();
    let data = tempfile::tempdir().unwrap();
    let p = LocalProvider::new(LocalConfig {
        idle_stop: Duration::from_secs(1),
        ..config(data.path())
    })
    .unwrap();
    let id = Uuid::new_v4();
    p.start_preview(id, Template::ViteReact, None)
        .await
        .unwrap();
    assert!(p.is_running(id));
    wait_until(Duration::from_secs(10), "the idle stop", || {
        !p.is_running(id)
    })
    .await;
    // The disk is lost too: the workspace comes back exactly as the version's files.
    std::fs::remove_file(
        data.path()
            .join("sandboxes")
            .join(id.to_string())
            .join("disk.img"),
    )
    .unwrap();
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

#[tokio::test]
async fn a_run_that_holds_its_sandbox_is_never_stopped_under_it() {
    require_root();
    let data = tempfile::tempdir().unwrap();
    let p = LocalProvider::new(LocalConfig {
        idle_stop: Duration::from_secs(1),
        ..config(data.path())
    })
    .unwrap();
    let id = Uuid::new_v4();
    // Opens race the reaper (it runs every 0.5 s and stops what was idle for 1 s): each open
    // either gets the live runtime or a new one, and its commands always run.
    for i in 0..12u64 {
        tokio::time::sleep(Duration::from_millis(250 * (i % 5))).await;
        let sb = p.open(id, Template::ViteReact, None).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        let r = sh(&sb, "echo STILL-HERE").await;
        assert_eq!(r.exit_code, Some(0), "round {i}: {}", r.output);
        assert!(r.output.contains("STILL-HERE"), "round {i}: {}", r.output);
        assert!(p.is_running(id), "round {i}: reaped while a run held it");
    }
    wait_until(Duration::from_secs(10), "the idle stop", || {
        !p.is_running(id)
    })
    .await;
}

#[tokio::test]
async fn a_stale_runtime_never_stops_a_newer_one() {
    require_root();
    let data = tempfile::tempdir().unwrap();
    let p = LocalProvider::new(config(data.path())).unwrap();
    let id = Uuid::new_v4();
    let old = p.open(id, Template::ViteReact, None).await.unwrap();
    p.stop(id).await;
    let err = old
        .run("true", &Default::default(), None)
        .await
        .unwrap_err();
    assert!(matches!(err, SandboxError::Stopped), "{err:?}");
    let new = p.open(id, Template::ViteReact, None).await.unwrap();
    let long = {
        let new = new.clone();
        tokio::spawn(async move { crate::sh(&new, "sleep 3; echo SURVIVED").await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The old runtime's last handle goes: its clean-up must not touch the new runtime.
    drop(old);
    let r = long.await.unwrap();
    assert!(r.output.contains("SURVIVED"), "{}", r.output);
    assert!(p.is_running(id));
    assert_eq!(sh(&new, "echo OK").await.exit_code, Some(0));
}

/// Processes of this test binary's children whose command line contains `needle`.
fn children_matching(needle: &str) -> Vec<u32> {
    let me = std::process::id();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let ppid: u32 = stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().nth(1))
            .and_then(|x| x.parse().ok())
            .unwrap_or(0);
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if ppid == me && cmd.contains(needle) {
            out.push(pid);
        }
    }
    out
}

#[tokio::test]
async fn a_failed_creation_leaves_nothing_behind() {
    require_root();
    for step in [SetupStep::AfterNetwork, SetupStep::AfterDisk] {
        let data = tempfile::tempdir().unwrap();
        let p = LocalProvider::new(LocalConfig {
            fail_at: Some(step),
            ..config(data.path())
        })
        .unwrap();
        let netns_before = children_matching("--net").len();
        let id = Uuid::new_v4();
        let err = p
            .open(id, Template::ViteReact, None)
            .await
            .err()
            .expect("creation fails");
        assert!(err.to_string().contains("on purpose"), "{err}");
        // The namespace holder is killed (and reaped) and the proxy task gone with it.
        wait_until(Duration::from_secs(5), "the namespace holder to go", || {
            children_matching("--net").len() <= netns_before
        })
        .await;
        assert!(!p.is_running(id));
        assert_eq!(p.live_count(), 0);
        assert!(
            p.sandbox_mounts(id).await.is_empty(),
            "{step:?}: mounts left: {:?}",
            p.sandbox_mounts(id).await
        );
        assert!(
            project_cgroups(id).is_empty(),
            "{step:?}: cgroups left: {:?}",
            project_cgroups(id)
        );
    }
}

/// The cgroup directories of a project (any server, any runtime) on this machine.
fn project_cgroups(id: Uuid) -> Vec<PathBuf> {
    let bases = match CgroupSupport::detect() {
        CgroupSupport::V1 { memory, pids, cpu } => {
            let mut v = vec![memory, pids];
            v.extend(cpu);
            v
        }
        CgroupSupport::V2 { base, .. } => vec![base],
        CgroupSupport::None { .. } => Vec::new(),
    };
    let mut out = Vec::new();
    for b in bases {
        for inst in std::fs::read_dir(&b).into_iter().flatten().flatten() {
            for g in std::fs::read_dir(inst.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                if g.file_name().to_string_lossy().starts_with(&id.to_string()) {
                    out.push(g.path());
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn groups_left_by_a_server_that_died_are_removed_at_start() {
    require_root();
    let bases = match CgroupSupport::detect() {
        CgroupSupport::V1 { memory, pids, .. } => vec![memory, pids],
        CgroupSupport::V2 { base, .. } => vec![base],
        CgroupSupport::None { why } => panic!("no cgroups on this machine: {why}"),
    };
    // A server with this pid cannot exist (above pid_max); its runtime's leaves remain.
    let dead: Vec<PathBuf> = bases.iter().map(|b| b.join("srv-4999999-12345")).collect();
    for d in &dead {
        std::fs::create_dir_all(d.join("proj-0").join("dev")).unwrap();
        std::fs::create_dir_all(d.join("proj-0").join("cmd")).unwrap();
    }
    let data = tempfile::tempdir().unwrap();
    let _p = LocalProvider::new(config(data.path())).unwrap();
    for d in &dead {
        assert!(!d.exists(), "{} is still there", d.display());
    }
}

#[tokio::test]
async fn live_sandboxes_are_capped() {
    require_root();
    let data = tempfile::tempdir().unwrap();
    let p = LocalProvider::new(LocalConfig {
        max_sandboxes: 1,
        evict_grace: Duration::from_secs(1),
        ..config(data.path())
    })
    .unwrap();
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    p.start_preview(a, Template::ViteReact, None).await.unwrap();
    // A was used just now: B's preview is told the server is busy.
    let err = p
        .start_preview(b, Template::ViteReact, None)
        .await
        .unwrap_err();
    assert!(matches!(err, SandboxError::Busy(_)), "{err:?}");
    assert!(p.is_running(a) && !p.is_running(b));
    // Once A is idle for the grace period, B takes its place.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    p.start_preview(b, Template::ViteReact, None).await.unwrap();
    assert!(!p.is_running(a) && p.is_running(b));
    assert_eq!(p.live_count(), 1);
    // A run comes first: it stops B even though B's preview was just used.
    let run = p.open(a, Template::ViteReact, None).await.unwrap();
    assert!(p.is_running(a) && !p.is_running(b));
    // A is held by the run: nothing may take its place, however long it is idle.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let err = p
        .start_preview(b, Template::ViteReact, None)
        .await
        .unwrap_err();
    assert!(matches!(err, SandboxError::Busy(_)), "{err:?}");
    drop(run);
}
