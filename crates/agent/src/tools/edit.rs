//! `editFile`: one exact, unique search text replaced.

use codeflux_sandbox::{Sandbox, SandboxError};
use serde::Deserialize;

use super::ToolResult;

pub(super) const NAME: &str = "editFile";

#[derive(Deserialize)]
struct EditArgs {
    path: String,
    search: String,
    replace: String,
}

pub(super) async fn run(
    sandbox: &dyn Sandbox,
    arguments: &str,
) -> Result<ToolResult, SandboxError> {
    let args: EditArgs = match serde_json::from_str(arguments) {
        Ok(a) => a,
        Err(e) => return Ok(super::bad_args(NAME, e)),
    };
    if args.search.is_empty() {
        return Ok(ToolResult::error(
            "`search` is empty; give the exact text to replace",
        ));
    }
    let current = match sandbox.read_file(&args.path).await {
        Ok(c) => c,
        Err(SandboxError::File(e)) => return Ok(ToolResult::error(e.to_string())),
        Err(e) => return Err(e),
    };
    let count = current.matches(&args.search).count();
    if count != 1 {
        let why = if count == 0 {
            format!(
                "the search text was not found in {}. Read the file and copy the text exactly (whitespace included).",
                args.path
            )
        } else {
            format!(
                "the search text occurs {count} times in {}; include more surrounding lines so it occurs once.",
                args.path
            )
        };
        return Ok(ToolResult::error(why));
    }
    let updated = current.replacen(&args.search, &args.replace, 1);
    match sandbox.write_file(&args.path, &updated).await {
        Ok(()) => {
            let path = codeflux_sandbox::workspace::clean_path(&args.path).unwrap_or(args.path);
            let content = format!(
                "Edited {path}: replaced {} characters with {}.",
                args.search.len(),
                args.replace.len()
            );
            Ok(ToolResult {
                tail: content.clone(),
                content,
                ok: true,
                exit_code: None,
                written: vec![path],
            })
        }
        Err(SandboxError::File(e)) => Ok(ToolResult::error(e.to_string())),
        Err(e) => Err(e),
    }
}
