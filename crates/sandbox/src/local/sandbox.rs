//! One project's sandbox as handed to a run: the agent's file tools and commands.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use codeflux_protocol::{CheckItem, CheckReport};

use async_trait::async_trait;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::runtime::UseGuard;
use crate::{CommandResult, PreviewState, RunOptions, Sandbox, SandboxError, check};

/// A run's handle on a project's runtime; while it exists the runtime is never stopped to
/// make room or for being idle.
pub struct LocalSandbox {
    lease: UseGuard,
}

impl LocalSandbox {
    pub(super) fn new(lease: UseGuard) -> Self {
        Self { lease }
    }
}

#[async_trait]
impl Sandbox for LocalSandbox {
    fn project_id(&self) -> Uuid {
        self.lease.runtime().id
    }

    async fn write_file(&self, path: &str, content: &str) -> Result<(), SandboxError> {
        let (path, content) = (path.to_owned(), content.to_owned());
        self.lease
            .runtime()
            .blocking(move |ws| ws.write(&path, &content))
            .await
    }

    async fn read_file(&self, path: &str) -> Result<String, SandboxError> {
        let path = path.to_owned();
        self.lease
            .runtime()
            .blocking(move |ws| ws.read(&path))
            .await
    }

    async fn list_files(&self) -> Result<Vec<String>, SandboxError> {
        self.lease.runtime().blocking(|ws| ws.list()).await
    }

    async fn snapshot(&self) -> Result<BTreeMap<String, String>, SandboxError> {
        self.lease.runtime().blocking(|ws| ws.snapshot()).await
    }

    async fn run(
        &self,
        command: &str,
        opts: &RunOptions,
        progress: Option<mpsc::Sender<String>>,
    ) -> Result<CommandResult, SandboxError> {
        let rt = self.lease.runtime();
        if rt.is_stopped() {
            return Err(SandboxError::Stopped);
        }
        rt.touch();
        let r = rt.spec.run_shell(command, opts, progress).await;
        rt.touch();
        r
    }

    fn preview_url(&self) -> String {
        self.lease.runtime().preview_url.clone()
    }

    async fn check(&self) -> Result<Option<CheckReport>, SandboxError> {
        let rt = self.lease.runtime();
        if rt.is_stopped() {
            return Err(SandboxError::Stopped);
        }
        rt.touch();
        let mut items = vec![self.typecheck().await?];
        items.extend(self.page_checks().await?);
        rt.touch();
        Ok(Some(CheckReport { items, rounds: 0 }))
    }
}

impl LocalSandbox {
    /// The template's type check: the project's `typecheck` script, else `tsc --noEmit`.
    async fn typecheck(&self) -> Result<CheckItem, SandboxError> {
        let rt = self.lease.runtime();
        let pkg = rt
            .blocking(|ws| match ws.read("package.json") {
                Ok(s) => Ok(s),
                Err(crate::FileError::NotFound(_)) => Ok(String::new()),
                Err(e) => Err(e),
            })
            .await
            .unwrap_or_default();
        let t0 = Instant::now();
        let r = rt
            .spec
            .run_shell(
                check::typecheck_command(&pkg),
                &RunOptions {
                    timeout: check::TYPECHECK_TIMEOUT,
                    output_cap: 32 * 1024,
                },
                None,
            )
            .await?;
        Ok(check::typecheck_item(&r, t0.elapsed().as_millis() as u64))
    }

    /// The dev server (it must answer) and a load of the page in a headless browser; the dev
    /// server's own error lines while the page loads.
    async fn page_checks(&self) -> Result<Vec<CheckItem>, SandboxError> {
        let rt = self.lease.runtime();
        let skipped = check::skipped;
        if !rt.dev_enabled || rt.netns().is_none() {
            return Ok(vec![
                skipped("dev server", "this sandbox runs no dev server"),
                skipped("page load", "this sandbox runs no dev server"),
            ]);
        }
        let t0 = Instant::now();
        rt.ensure_dev_server_now();
        loop {
            match rt.state() {
                PreviewState::Ready => break,
                PreviewState::Failed(why) => {
                    return Ok(vec![
                        check::failed(
                            "dev server",
                            &format!("the dev server does not run: {why}"),
                            t0.elapsed().as_millis() as u64,
                        ),
                        skipped("page load", "the dev server does not run"),
                    ]);
                }
                _ if t0.elapsed() > Duration::from_secs(90) => {
                    return Ok(vec![
                        check::failed(
                            "dev server",
                            "the dev server did not answer within 90 s",
                            t0.elapsed().as_millis() as u64,
                        ),
                        skipped("page load", "the dev server does not answer"),
                    ]);
                }
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        let dev_ms = t0.elapsed().as_millis() as u64;
        if !std::path::Path::new(check::CHROMIUM).exists() {
            return Ok(vec![
                check::parse_dev_log(&[], dev_ms),
                skipped(
                    "page load",
                    "no headless browser on this server (package chromium)",
                ),
            ]);
        }
        let before = rt.log_bytes().1;
        let t1 = Instant::now();
        let url = format!("http://127.0.0.1:{}/", rt.dev_port);
        let r = rt
            .spec
            .run_shell(
                &check::page_command(&url),
                &RunOptions {
                    timeout: Duration::from_secs(60),
                    output_cap: 64 * 1024,
                },
                None,
            )
            .await?;
        let page_ms = t1.elapsed().as_millis() as u64;
        let new_lines = rt.log_since(before);
        Ok(vec![
            check::parse_dev_log(&new_lines, dev_ms),
            check::parse_page(&r.output, page_ms),
        ])
    }
}
