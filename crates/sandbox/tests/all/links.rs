//! Links planted in a workspace, every way a command can, then every host-side operation the
//! server does on it: stop, revive, a run's restore, a version switch, delete. The root-owned
//! canaries outside the data dir never change and the workspace is repaired each time.

use std::sync::Arc;
use std::time::Duration;

use codeflux_protocol::Template;
use codeflux_sandbox::local::{LocalConfig, LocalProvider};
use codeflux_sandbox::{PreviewState, Sandbox, SandboxProvider};
use uuid::Uuid;

use crate::{Canaries, config, require_root, sh};

fn plants(c: &Canaries) -> Vec<String> {
    let (d, f) = (c.dir.display(), c.file.display());
    vec![
        // node_modules itself a link to a host directory; package.json gone.
        format!("rm -f package.json; rm -rf node_modules; ln -s {d} node_modules"),
        // Links inside node_modules where the old clone copied its dot entries and stamp.
        format!(
            "rm -rf node_modules; mkdir node_modules; ln -s {f} node_modules/.package-lock.json; \
             ln -s {d} node_modules/.vite; ln -s {f} node_modules/.codeflux-installed; \
             ln -s {d} node_modules/.bin; ln -s {d} node_modules/react"
        ),
        // Sources, dot entries and the npm cache as links; package.json a link to a host file.
        format!(
            "rm -rf src .home public; ln -s {d} src; ln -s {d} .home; ln -s {f} public; \
             ln -sf {f} package.json; ln -s {f} .env; ln -s {d} .git; ln -s / rootlink"
        ),
        // A FIFO and a deep tree where files are written, a file where a directory is expected.
        "rm -rf src index.html; mkfifo index.html; touch src; d=deep; for i in $(seq 200); do d=$d/d; done; mkdir -p $d"
            .to_owned(),
    ]
}

async fn assert_repaired(sb: &Arc<dyn Sandbox>, what: &str) {
    let r = sh(
        sb,
        "test -f node_modules/vite/package.json && test ! -L node_modules && echo PACKAGES-OK; \
         test -f src/App.tsx && test ! -L src && echo SOURCES-OK; cat package.json | head -c 40",
    )
    .await;
    assert!(
        r.output.contains("PACKAGES-OK") && r.output.contains("SOURCES-OK"),
        "{what}: the workspace is not repaired: {}",
        r.output
    );
}

#[tokio::test]
async fn planted_links_never_reach_the_host() {
    require_root();
    let canaries = Canaries::new();
    let data = tempfile::tempdir().unwrap();
    let p = LocalProvider::new(LocalConfig {
        dev_servers: true,
        ..config(data.path())
    })
    .unwrap();
    let page = "export default function App() { return <h1>REPAIRED</h1>; }\n";
    for (i, plant) in plants(&canaries).iter().enumerate() {
        let id = Uuid::new_v4();
        let sb = p.open(id, Template::ViteReact, None).await.unwrap();
        let r = sh(&sb, &format!("{plant}; echo PLANTED")).await;
        assert!(r.output.contains("PLANTED"), "plant {i}: {}", r.output);
        // What a run's end stores: the snapshot (links are never part of it).
        let mut version = sb.snapshot().await.unwrap();
        assert!(
            !version
                .keys()
                .any(|k| k.starts_with("rootlink") || k == ".env"),
            "plant {i}: {version:?}"
        );
        drop(sb);
        canaries.assert_unchanged(&format!("plant {i}, planted"));

        // Stop (idle or server stop), then revive for a preview from the stored version.
        p.stop(id).await;
        canaries.assert_unchanged(&format!("plant {i}, stopped"));
        p.start_preview(id, Template::ViteReact, Some(&version))
            .await
            .unwrap();
        canaries.assert_unchanged(&format!("plant {i}, revived"));

        // The next run restores the version and writes the page: it works again.
        version.remove("src");
        version.insert("src/App.tsx".into(), page.into());
        version.insert(
            "package.json".into(),
            codeflux_sandbox::template::TemplateStore::new(
                crate::templates_dir(),
                config(data.path()).template_cache,
            )
            .source_texts(Template::ViteReact)
            .unwrap()
            .remove("package.json")
            .unwrap(),
        );
        let sb = p
            .open(id, Template::ViteReact, Some(&version))
            .await
            .unwrap();
        assert_repaired(&sb, &format!("plant {i}, next run")).await;
        // Plant again while the runtime lives, then switch versions (a restore in place).
        let r = sh(&sb, &format!("{plant}; echo PLANTED-AGAIN")).await;
        assert!(r.output.contains("PLANTED-AGAIN"), "{}", r.output);
        drop(sb);
        p.show_files(id, Template::ViteReact, &version)
            .await
            .unwrap();
        canaries.assert_unchanged(&format!("plant {i}, version switch"));
        // A restart: the runtime goes, the next one starts from the record.
        p.stop(id).await;
        let sb = p
            .open(id, Template::ViteReact, Some(&version))
            .await
            .unwrap();
        assert_repaired(&sb, &format!("plant {i}, after restart")).await;
        drop(sb);
        if i == 0 {
            // The preview serves the page again.
            let t0 = std::time::Instant::now();
            loop {
                if p.preview_state(id) == PreviewState::Ready {
                    break;
                }
                assert!(
                    t0.elapsed() < Duration::from_secs(120),
                    "the preview of plant {i} never came back: {:?} {:?}",
                    p.preview_state(id),
                    p.dev_server_log(id)
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        // Delete: everything of the sandbox goes, nothing outside.
        let sb = p
            .open(id, Template::ViteReact, Some(&version))
            .await
            .unwrap();
        sh(&sb, &format!("{plant}; true")).await;
        drop(sb);
        p.delete(id).await.unwrap();
        assert!(!data.path().join("sandboxes").join(id.to_string()).exists());
        canaries.assert_unchanged(&format!("plant {i}, deleted"));
    }
    drop(p);
    canaries.assert_unchanged("at the end");
}
