//! The E2B clients (REST API and envd) against the loopback double that speaks E2B's wire
//! protocol: create with the API key, files and commands through envd with the sandbox's access
//! token (Connect streaming), timeouts, kill, and each refusal told clearly.

use std::time::Duration;

use codeflux_sandbox::e2b::api::Api;
use codeflux_sandbox::e2b::envd::Envd;
use codeflux_test_support::e2b_double::E2bDouble;

#[tokio::test]
async fn the_api_and_envd_speak_e2bs_protocol() {
    let double = E2bDouble::start().await.unwrap();
    let http = codeflux_sandbox::e2b::http_client().unwrap();
    let api = Api::new(http.clone(), &double.base_url, &double.api_key);

    // Refusals say why.
    let bad = Api::new(http.clone(), &double.base_url, "e2b_wrong");
    let e = bad
        .create("codeflux-nextjs", Duration::from_secs(300), &[])
        .await
        .unwrap_err();
    assert!(
        e.message.contains("401") && e.message.contains("E2B_API_KEY"),
        "{e}"
    );
    let e = api
        .create("missing", Duration::from_secs(300), &[])
        .await
        .unwrap_err();
    assert!(
        e.message.contains("404") && e.message.contains("template"),
        "{e}"
    );

    let sb = api
        .create(
            "codeflux-nextjs",
            Duration::from_secs(300),
            &[("project", "p1")],
        )
        .await
        .unwrap();
    assert_eq!(
        double.template(&sb.sandbox_id).as_deref(),
        Some("codeflux-nextjs")
    );
    let token = sb.envd_access_token.clone();
    assert!(token.is_some());
    let envd = Envd::new(http.clone(), &double.base_url, &sb.sandbox_id, token);

    // Files.
    envd.write("/home/user/src/App.tsx", b"export const a = 1; // \xc3\xa9")
        .await
        .unwrap();
    let home = double.home(&sb.sandbox_id).unwrap();
    assert!(home.join("src/App.tsx").exists());
    let got = envd.read("/home/user/src/App.tsx").await.unwrap().unwrap();
    assert_eq!(String::from_utf8(got).unwrap(), "export const a = 1; // é");
    assert_eq!(envd.read("/home/user/nope.txt").await.unwrap(), None);
    envd.write("/home/user/a b&c.txt", b"x").await.unwrap();
    assert!(home.join("a b&c.txt").exists(), "the path is encoded");
    let wrong = Envd::new(
        http.clone(),
        &double.base_url,
        &sb.sandbox_id,
        Some("nope".into()),
    );
    let e = wrong.read("/home/user/src/App.tsx").await.unwrap_err();
    assert_eq!(e.status, Some(401), "{e}");

    // A command: output streamed and kept, its exit code (a non-zero one is sent, zero is
    // left out of the JSON and read as 0).
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let done = envd
        .run(
            "echo out-line; echo err-line >&2; cat src/App.tsx; exit 3",
            "/home/user",
            Duration::from_secs(20),
            65536,
            Some(tx),
        )
        .await
        .unwrap();
    assert_eq!(done.exit_code, 3);
    assert!(!done.timed_out);
    assert!(
        done.output.contains("out-line")
            && done.output.contains("err-line")
            && done.output.contains("const a"),
        "{}",
        done.output
    );
    let mut streamed = String::new();
    while let Ok(s) = rx.try_recv() {
        streamed.push_str(&s);
    }
    assert!(streamed.contains("out-line"), "{streamed}");
    let ok = envd
        .run("true", "/home/user", Duration::from_secs(20), 1024, None)
        .await
        .unwrap();
    assert_eq!(ok.exit_code, 0);
    // Output past the budget keeps its head and tail.
    let big = envd
        .run(
            "seq 1 20000",
            "/home/user",
            Duration::from_secs(20),
            2048,
            None,
        )
        .await
        .unwrap();
    assert!(
        big.output.starts_with("1\n2\n")
            && big.output.ends_with("20000\n")
            && big.output.len() < 2100,
        "{}",
        big.output.len()
    );
    // A missing working directory is envd's invalid_argument, told.
    let e = envd
        .run(
            "true",
            "/home/user/none",
            Duration::from_secs(5),
            1024,
            None,
        )
        .await
        .unwrap_err();
    assert!(e.message.contains("invalid_argument"), "{e}");
    // Past its time a command is killed and says so.
    let t0 = std::time::Instant::now();
    let slow = envd
        .run("sleep 60", "/home/user", Duration::from_secs(1), 1024, None)
        .await
        .unwrap();
    assert!(slow.timed_out && t0.elapsed() < Duration::from_secs(20));

    // Its life: extended, killed, gone.
    assert!(
        api.set_timeout(&sb.sandbox_id, Duration::from_secs(600))
            .await
            .unwrap()
    );
    assert!(api.kill(&sb.sandbox_id).await.unwrap());
    assert!(!api.kill(&sb.sandbox_id).await.unwrap());
    assert!(
        !api.set_timeout(&sb.sandbox_id, Duration::from_secs(600))
            .await
            .unwrap()
    );
    let e = envd.read("/home/user/src/App.tsx").await.unwrap_err();
    assert_eq!(e.status, Some(502), "{e}");
    assert!(double.sandboxes().is_empty());
}
