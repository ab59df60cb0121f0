//! `createOrUpdateFiles`: whole files written at once.

use codeflux_sandbox::{Sandbox, SandboxError};
use serde::Deserialize;

use super::{ToolResult, tail};

pub(super) const NAME: &str = "createOrUpdateFiles";

#[derive(Deserialize)]
struct FileArg {
    path: String,
    content: String,
}

#[derive(Deserialize)]
struct WriteArgs {
    files: Vec<FileArg>,
}

pub(super) async fn run(
    sandbox: &dyn Sandbox,
    arguments: &str,
) -> Result<ToolResult, SandboxError> {
    let args: WriteArgs = match serde_json::from_str(arguments) {
        Ok(a) => a,
        Err(e) => return Ok(super::bad_args(NAME, e)),
    };
    if args.files.is_empty() {
        return Ok(ToolResult::error("no files given"));
    }
    let mut written = Vec::new();
    let mut failed = Vec::new();
    for f in args.files {
        match sandbox.write_file(&f.path, &f.content).await {
            Ok(()) => {
                written.push(codeflux_sandbox::workspace::clean_path(&f.path).unwrap_or(f.path))
            }
            Err(SandboxError::File(e)) => failed.push(e.to_string()),
            Err(e) => return Err(e),
        }
    }
    let mut content = String::new();
    if !written.is_empty() {
        content.push_str(&format!(
            "Wrote {} file(s): {}",
            written.len(),
            written.join(", ")
        ));
    }
    if !failed.is_empty() {
        if !content.is_empty() {
            content.push('\n');
        }
        content.push_str(&format!("Not written:\n- {}", failed.join("\n- ")));
    }
    Ok(ToolResult {
        tail: tail(&content, 600),
        ok: failed.is_empty(),
        content,
        exit_code: None,
        written,
    })
}
