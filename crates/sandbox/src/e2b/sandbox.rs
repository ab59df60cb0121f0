//! The agent's sandbox on E2B: files through envd's `/files` (paths checked here first, always
//! under /home/user), commands through `process.Process/Start`, the file list from one `find`
//! run inside the sandbox.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::envd::{EnvdError, shell_quote};
use super::live::{Hold, Live};
use crate::workspace::{FileError, MAX_FILE_BYTES, MAX_SNAPSHOT_BYTES, SKIP_DIRS, clean_path};
use crate::{CommandResult, RunOptions, Sandbox, SandboxError, check};
use codeflux_protocol::CheckReport;

pub(super) const HOME: &str = "/home/user";
/// Files read at once while taking a snapshot.
const READ_AHEAD: usize = 8;
/// Largest file list (`find` output) read back.
const LIST_BYTES: usize = 8 * 1024 * 1024;

pub(super) fn envd_err(e: EnvdError) -> SandboxError {
    SandboxError::Spawn(e.to_string())
}

/// One handle on a live sandbox; while it lives the sandbox counts as in use.
pub(super) struct E2bSandbox {
    pub live: Arc<Live>,
    pub preview_url: String,
    http: reqwest::Client,
    _hold: Hold,
}

impl E2bSandbox {
    pub fn new(live: Arc<Live>, preview_url: String, http: reqwest::Client) -> Self {
        let hold = live.hold();
        Self {
            live,
            preview_url,
            http,
            _hold: hold,
        }
    }
}

/// The workspace's files: regular files by path with their SHA-256, and everything else that
/// is not a directory (links, FIFOs) by path. Skipped directories are not entered.
pub(super) struct Inventory {
    pub files: BTreeMap<String, String>,
    pub others: Vec<String>,
}

/// Lists the workspace inside the sandbox: `find` prunes the skipped directories and hashes
/// every regular file; one command, whatever the number of files.
pub(super) async fn inventory(live: &Live) -> Result<Inventory, SandboxError> {
    let prune = SKIP_DIRS
        .iter()
        .map(|d| format!("-name {}", shell_quote(d)))
        .collect::<Vec<_>>()
        .join(" -o ");
    let cmd = format!(
        "find . -mindepth 1 -type d \\( {prune} \\) -prune -o -type f -exec sha256sum -- {{}} + -o ! -type d -printf 'other  %p\\n'"
    );
    let done = live
        .envd
        .run(
            &cmd,
            HOME,
            std::time::Duration::from_secs(60),
            LIST_BYTES,
            None,
        )
        .await
        .map_err(envd_err)?;
    if done.exit_code != 0 || done.omitted > 0 {
        return Err(SandboxError::Spawn(format!(
            "listing the files failed (exit {}): {}",
            done.exit_code,
            done.output.chars().take(500).collect::<String>()
        )));
    }
    let mut inv = Inventory {
        files: BTreeMap::new(),
        others: Vec::new(),
    };
    for line in done.output.lines() {
        // sha256sum escapes odd names with a leading backslash; such files are left alone.
        let Some((hash, path)) = line.split_once("  ") else {
            continue;
        };
        let Some(path) = path.strip_prefix("./") else {
            continue;
        };
        if hash.starts_with('\\') {
            continue;
        }
        if hash == "other" {
            inv.others.push(path.to_owned());
        } else {
            inv.files.insert(path.to_owned(), hash.to_owned());
        }
    }
    Ok(inv)
}

pub(super) fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Removes `paths` (relative to the workspace) in one command per batch.
pub(super) async fn remove(live: &Live, paths: &[String]) -> Result<(), SandboxError> {
    for batch in paths.chunks(200) {
        let args: Vec<String> = batch.iter().map(|p| shell_quote(p)).collect();
        let done = live
            .envd
            .run(
                &format!("rm -f -- {}", args.join(" ")),
                HOME,
                std::time::Duration::from_secs(60),
                16 * 1024,
                None,
            )
            .await
            .map_err(envd_err)?;
        if done.exit_code != 0 {
            return Err(SandboxError::Spawn(format!(
                "removing files failed: {}",
                done.output.chars().take(500).collect::<String>()
            )));
        }
    }
    Ok(())
}

/// Makes the workspace's sources exactly `files` (from the server's records): writes what
/// differs, removes what is not in it (and every link or FIFO). True when package.json changed.
pub(super) async fn replace_sources(
    live: &Live,
    files: &BTreeMap<String, String>,
) -> Result<bool, SandboxError> {
    let inv = inventory(live).await?;
    let mut gone: Vec<String> = inv
        .files
        .keys()
        .filter(|p| !files.contains_key(*p))
        .cloned()
        .collect();
    gone.extend(inv.others.iter().cloned());
    remove(live, &gone).await?;
    let mut package_changed = false;
    let writes: Vec<(&String, &String)> = files
        .iter()
        .filter(|(p, c)| {
            inv.others.contains(p)
                || inv.files.get(*p).map(String::as_str) != Some(sha256_hex(c.as_bytes()).as_str())
        })
        .collect();
    for (path, content) in writes {
        let path = clean_path(path)?;
        if path == "package.json" {
            package_changed = true;
        }
        live.envd
            .write(&format!("{HOME}/{path}"), content.as_bytes())
            .await
            .map_err(envd_err)?;
    }
    Ok(package_changed)
}

fn file_err(path: &str, e: EnvdError) -> SandboxError {
    match e.status {
        Some(413) => SandboxError::File(FileError::TooLarge {
            path: path.to_owned(),
            size: MAX_FILE_BYTES + 1,
            limit: MAX_FILE_BYTES,
        }),
        Some(400) => SandboxError::File(FileError::NotRegular {
            path: path.to_owned(),
            what: "a directory".into(),
        }),
        _ => envd_err(e),
    }
}

async fn read_text(live: &Live, path: &str) -> Result<String, SandboxError> {
    let path = clean_path(path)?;
    let bytes = live
        .envd
        .read(&format!("{HOME}/{path}"), MAX_FILE_BYTES)
        .await
        .map_err(|e| file_err(&path, e))?
        .ok_or_else(|| FileError::NotFound(path.clone()))?;
    String::from_utf8(bytes).map_err(|_| FileError::Binary(path).into())
}

#[async_trait]
impl Sandbox for E2bSandbox {
    fn project_id(&self) -> Uuid {
        self.live.project
    }

    async fn write_file(&self, path: &str, content: &str) -> Result<(), SandboxError> {
        self.live.touch();
        let path = clean_path(path)?;
        if content.len() as u64 > MAX_FILE_BYTES {
            return Err(FileError::TooLarge {
                path,
                size: content.len() as u64,
                limit: MAX_FILE_BYTES,
            }
            .into());
        }
        self.live
            .envd
            .write(&format!("{HOME}/{path}"), content.as_bytes())
            .await
            .map_err(|e| file_err(&path, e))
    }

    async fn read_file(&self, path: &str) -> Result<String, SandboxError> {
        self.live.touch();
        read_text(&self.live, path).await
    }

    async fn list_files(&self) -> Result<Vec<String>, SandboxError> {
        self.live.touch();
        Ok(inventory(&self.live).await?.files.into_keys().collect())
    }

    async fn snapshot(&self) -> Result<BTreeMap<String, String>, SandboxError> {
        self.live.touch();
        let paths: Vec<String> = inventory(&self.live).await?.files.into_keys().collect();
        let mut out = BTreeMap::new();
        let mut total = 0;
        for batch in paths.chunks(READ_AHEAD) {
            let reads = batch.iter().map(|p| read_text(&self.live, p));
            for (path, got) in batch
                .iter()
                .zip(futures_util::future::join_all(reads).await)
            {
                match got {
                    Ok(content) => {
                        total += content.len();
                        if total > MAX_SNAPSHOT_BYTES {
                            tracing::warn!(project = %self.live.project, "snapshot over {MAX_SNAPSHOT_BYTES} bytes; rest left out");
                            return Ok(out);
                        }
                        out.insert(path.clone(), content);
                    }
                    Err(SandboxError::File(
                        FileError::Binary(_)
                        | FileError::TooLarge { .. }
                        | FileError::NotRegular { .. }
                        // Removed between the listing and the read.
                        | FileError::NotFound(_),
                    )) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(out)
    }

    async fn run(
        &self,
        command: &str,
        opts: &RunOptions,
        progress: Option<mpsc::Sender<String>>,
    ) -> Result<CommandResult, SandboxError> {
        self.live.touch();
        let started = Instant::now();
        let done = self
            .live
            .envd
            .run(command, HOME, opts.timeout, opts.output_cap, progress)
            .await
            .map_err(envd_err)?;
        self.live.touch();
        Ok(CommandResult {
            exit_code: (!done.timed_out).then_some(done.exit_code),
            output: done.output,
            timed_out: done.timed_out,
            omitted_bytes: done.omitted,
            duration: started.elapsed(),
        })
    }

    fn preview_url(&self) -> String {
        self.preview_url.clone()
    }

    fn check_plan(&self) -> &'static str {
        "type check and the dev server's answer"
    }

    /// The type check and the dev server's answer, inside the E2B sandbox. The page load in a
    /// headless browser is the local backend's (E2B's templates carry no Chromium).
    async fn check(&self) -> Result<Option<CheckReport>, SandboxError> {
        let pkg = match read_text(&self.live, "package.json").await {
            Ok(s) => s,
            Err(SandboxError::File(_)) => String::new(),
            Err(e) => return Err(e),
        };
        let t0 = Instant::now();
        let r = self
            .run(
                check::typecheck_command(&pkg),
                &RunOptions {
                    timeout: check::TYPECHECK_TIMEOUT,
                    output_cap: 32 * 1024,
                },
                None,
            )
            .await?;
        let typecheck = check::typecheck_item(
            &r,
            u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX),
        );
        let dev = self.live.dev_check(&self.http).await;
        let page = check::skipped(
            "page load",
            "E2B sandboxes have no headless browser (the local backend loads the page)",
        );
        Ok(Some(CheckReport {
            items: vec![typecheck, dev, page],
            rounds: 0,
        }))
    }
}
