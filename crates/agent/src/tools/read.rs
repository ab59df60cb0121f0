//! `readFiles`: files of the project, each cut at a bound.

use codeflux_sandbox::{Sandbox, SandboxError};
use serde::Deserialize;
use serde_json::json;

use super::{ToolResult, first_chars, list};

/// Most characters of one file's content in a readFiles result.
const MAX_READ_CHARS: usize = 60_000;

pub(super) const NAME: &str = "readFiles";

#[derive(Deserialize)]
struct ReadArgs {
    files: Vec<String>,
}

pub(super) async fn run(
    sandbox: &dyn Sandbox,
    arguments: &str,
) -> Result<ToolResult, SandboxError> {
    let args: ReadArgs = match serde_json::from_str(arguments) {
        Ok(a) => a,
        Err(e) => return Ok(super::bad_args(NAME, e)),
    };
    if args.files.is_empty() {
        return Ok(ToolResult::error("no files given"));
    }
    let mut out = Vec::new();
    let mut all_ok = true;
    for path in args.files.iter().take(50) {
        match sandbox.read_file(path).await {
            Ok(content) => {
                let content = if content.chars().count() > MAX_READ_CHARS {
                    format!(
                        "{}\n[... file cut at {MAX_READ_CHARS} characters ...]",
                        first_chars(&content, MAX_READ_CHARS)
                    )
                } else {
                    content
                };
                out.push(json!({"path": path, "content": content}));
            }
            Err(SandboxError::File(e)) => {
                all_ok = false;
                out.push(json!({"path": path, "error": e.to_string()}));
            }
            Err(e) => return Err(e),
        }
    }
    let content = serde_json::to_string_pretty(&out).unwrap_or_default();
    let names: Vec<String> = args.files.iter().take(50).cloned().collect();
    Ok(ToolResult {
        tail: format!("Read {}", list(&names)),
        content,
        ok: all_ok,
        exit_code: None,
        written: Vec::new(),
    })
}
