//! Commands in the sandbox: isolation, the seccomp policy, the disk, CPU and process caps.

use std::time::Duration;

use codeflux_protocol::Template;
use codeflux_sandbox::local::LocalProvider;
use codeflux_sandbox::{RunOptions, SandboxProvider};
use uuid::Uuid;

use crate::{config, provider, require_root, sh};

#[tokio::test]
async fn commands_run_isolated_in_the_workspace() {
    let data = tempfile::tempdir().unwrap();
    require_root();
    let p = provider(data.path());
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

    let r = run("pwd; cat hello.txt; echo made > made.txt; id -u; env | sort; test -f node_modules/vite/package.json && echo VITE-PRESENT; echo tmp > /tmp/x && cat /tmp/x").await;
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
    assert!(!r.output.contains("\n0\n"), "not root inside: {}", r.output);
    assert!(
        r.output.contains("VITE-PRESENT"),
        "the template's packages are in node_modules: {}",
        r.output
    );

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
    {
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

/// A syscall made from perl (always in Debian's base): prints `NAME=<errno>` (0: it worked).
#[cfg(target_arch = "x86_64")]
fn syscall_probe(name: &str, nr: u32, args: &str) -> String {
    format!("perl -e '$r = syscall({nr}{args}); print \"{name}=\", ($r == -1 ? $!+0 : 0), \"\\n\"'")
}

#[tokio::test]
async fn the_kernel_surface_is_closed() {
    require_root();
    let data = tempfile::tempdir().unwrap();
    let p = provider(data.path());
    let sb = p
        .open(Uuid::new_v4(), Template::ViteReact, None)
        .await
        .unwrap();
    let r = sh(&sb, "unshare -U -r true; echo USERNS=$?; unshare -m true; echo MNTNS=$?; unshare -n true; echo NETNS=$?; mkdir -p m; mount -t tmpfs none m; echo MOUNT=$?").await;
    for probe in ["USERNS", "MNTNS", "NETNS", "MOUNT"] {
        let rc = r
            .output
            .split(&format!("{probe}="))
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .unwrap_or("?");
        assert!(rc != "0" && rc != "?", "{probe} must fail: {}", r.output);
    }
    // What people really run keeps working: node (threads), npm, git, sh, esbuild.
    let r = sh(&sb, "node -e 'const {Worker}=require(\"worker_threads\"); new Worker(\"process.exit(0)\",{eval:true}).on(\"exit\",()=>console.log(\"WORKER-OK\"))' && npm --version && git --version && node node_modules/vite/bin/vite.js --version && git init -q g && echo GIT-INIT-OK").await;
    assert_eq!(r.exit_code, Some(0), "{}", r.output);
    assert!(r.output.contains("WORKER-OK"), "{}", r.output);
    assert!(r.output.contains("git version"), "{}", r.output);
    assert!(r.output.contains("vite/"), "vite runs: {}", r.output);
    assert!(r.output.contains("GIT-INIT-OK"), "{}", r.output);
    #[cfg(target_arch = "x86_64")]
    {
        // EPERM (1) for each of these; ENOSYS (38) for clone3 and io_uring (libc falls back).
        let probes = [
            syscall_probe("bpf", 321, ", 0, 0, 0"),
            syscall_probe("perf_event_open", 298, ", 0, 0, -1, -1, 0"),
            syscall_probe("keyctl", 250, ", 0, 0, 0, 0, 0"),
            syscall_probe("add_key", 248, ", 0, 0, 0, 0, 0"),
            syscall_probe("ptrace", 101, ", 16, 1, 0, 0"),
            syscall_probe("kexec_load", 246, ", 0, 0, 0, 0"),
            syscall_probe("init_module", 175, ", 0, 0, 0"),
            syscall_probe("setns", 308, ", 0, 0"),
            syscall_probe("userfaultfd", 323, ", 0"),
            syscall_probe("open_by_handle_at", 304, ", 0, 0, 0"),
            syscall_probe("clone3", 435, ", 0, 0"),
            syscall_probe("io_uring_setup", 425, ", 1, 0"),
        ];
        let r = sh(&sb, &probes.join("; ")).await;
        for (name, want) in [
            ("bpf", "1"),
            ("perf_event_open", "1"),
            ("keyctl", "1"),
            ("add_key", "1"),
            ("ptrace", "1"),
            ("kexec_load", "1"),
            ("init_module", "1"),
            ("setns", "1"),
            ("userfaultfd", "1"),
            ("open_by_handle_at", "1"),
            ("clone3", "38"),
            ("io_uring_setup", "38"),
        ] {
            assert!(
                r.output.contains(&format!("{name}={want}\n")),
                "{name} should fail with errno {want}: {}",
                r.output
            );
        }
    }
}

#[tokio::test]
async fn the_disk_is_capped_for_the_workspace_tmp_and_cache() {
    require_root();
    let data = tempfile::tempdir().unwrap();
    let p = LocalProvider::new(codeflux_sandbox::local::LocalConfig {
        disk_bytes: 128 * 1024 * 1024,
        ..config(data.path())
    })
    .unwrap();
    let id = Uuid::new_v4();
    let sb = p.open(id, Template::ViteReact, None).await.unwrap();
    let r = sh(&sb, "dd if=/dev/zero of=big.bin bs=1M count=300 2>&1 | head -1; df -k . | tail -1; dd if=/dev/zero of=/tmp/t.bin bs=1M count=10 2>&1 | head -1; mkdir -p .home/.npm && dd if=/dev/zero of=.home/.npm/c bs=1M count=10 2>&1 | head -1").await;
    assert_eq!(
        r.output.matches("No space left on device").count(),
        3,
        "workspace, /tmp and the npm cache share the 128 MiB disk: {}",
        r.output
    );
    // The image holds what was written, not more: the host's disk is not filled.
    use std::os::unix::fs::MetadataExt;
    let image = data
        .path()
        .join("sandboxes")
        .join(id.to_string())
        .join("disk.img");
    let used = std::fs::metadata(&image).unwrap().blocks() * 512;
    assert!(
        used <= 140 * 1024 * 1024,
        "image uses {used} bytes on the host"
    );
    // Deleting gives the space back, inside and on the host (discard).
    let r = sh(&sb, "rm -f big.bin /tmp/t.bin .home/.npm/c; sync; dd if=/dev/zero of=again.bin bs=1M count=20 2>&1 | tail -1").await;
    assert!(!r.output.contains("No space"), "{}", r.output);
    // Another project is unaffected.
    let other = p
        .open(Uuid::new_v4(), Template::ViteReact, None)
        .await
        .unwrap();
    let r = sh(
        &other,
        "dd if=/dev/zero of=x.bin bs=1M count=50 2>&1 | tail -1",
    )
    .await;
    assert_eq!(r.exit_code, Some(0), "{}", r.output);
}

#[tokio::test]
async fn cpu_time_is_capped() {
    require_root();
    let data = tempfile::tempdir().unwrap();
    let p = LocalProvider::new(codeflux_sandbox::local::LocalConfig {
        cpus: 0.5,
        ..config(data.path())
    })
    .unwrap();
    let sb = p
        .open(Uuid::new_v4(), Template::ViteReact, None)
        .await
        .unwrap();
    // Four spinners for 4 s each, in their own sessions; `times` prints the CPU time of the
    // shell's children (user, then system) on its second line.
    let r = sh(
        &sb,
        "for i in 1 2 3 4; do setsid timeout 4 sh -c 'while :; do :; done' & done; wait; times",
    )
    .await;
    let line = r.output.lines().last().unwrap_or_default().to_owned();
    let secs: f64 = line
        .split_whitespace()
        .map(|t| {
            let (m, s) = t
                .trim_end_matches('s')
                .split_once('m')
                .unwrap_or(("0", "0"));
            m.parse::<f64>().unwrap_or(0.0) * 60.0 + s.parse::<f64>().unwrap_or(0.0)
        })
        .sum();
    assert!(secs > 0.5, "the spinners ran: {}", r.output);
    assert!(
        secs < 3.0,
        "0.5 CPU for 4 s is about 2 s of CPU time, not {secs:.2} s: {}",
        r.output
    );
}

#[tokio::test]
async fn the_process_limit_is_counted_where_the_processes_are() {
    require_root();
    let data = tempfile::tempdir().unwrap();
    let p = provider(data.path());
    let sb = p
        .open(Uuid::new_v4(), Template::ViteReact, None)
        .await
        .unwrap();
    // Fork until it fails, then count the processes the sandbox really has (its own PID
    // namespace: /proc shows only them).
    let r = sb
        .run(
            // The forking loop in a subshell (sh gives up at the first failed fork), then a
            // count with shell builtins only (no fork left to spare): the glob's words.
            "(i=0; while [ $i -lt 3000 ]; do sleep 30 & i=$((i+1)); done) 2>/tmp/fork.err; set -- /proc/[0-9]*; echo LIVE=$#; kill -9 -1 2>/dev/null; sleep 1; grep -c -i -E 'fork|resource' /tmp/fork.err",
            &RunOptions {
                timeout: Duration::from_secs(120),
                ..RunOptions::default()
            },
            None,
        )
        .await
        .unwrap();
    let live: usize = r
        .output
        .split("LIVE=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(live >= 100, "the probe ran: {r:?}");
    assert!(
        live <= 400,
        "commands get at most 384 of the project's 512 processes; {live} live: {}",
        r.output
    );
}
