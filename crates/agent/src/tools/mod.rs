//! The agent's tools, named and shaped as in the original product (terminal,
//! createOrUpdateFiles, readFiles) plus editFile. A tool's own failure is returned to the model
//! as its result; only a broken sandbox ends the run.

use codeflux_llm::ToolSpec;
use codeflux_sandbox::{RunOptions, Sandbox, SandboxError};
use serde_json::json;
use tokio::sync::mpsc;

/// Most characters of one tool result sent back to the model.
pub const MAX_RESULT_CHARS: usize = 24_000;

pub fn specs() -> Vec<ToolSpec> {
    vec![
        ToolSpec::function(
            "terminal",
            "Run a shell command in the project directory (for example `npm install date-fns` or `ls src`). Returns the exit code and the output. The dev server is already running: never start it or a build.",
            json!({
                "type": "object",
                "properties": { "command": { "type": "string", "description": "The command line, run with sh -c." } },
                "required": ["command"],
                "additionalProperties": false
            }),
        ),
        ToolSpec::function(
            "createOrUpdateFiles",
            "Create or overwrite files with their complete content. Paths are relative to the project root.",
            json!({
                "type": "object",
                "properties": {
                    "files": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "path": { "type": "string", "description": "Relative path, e.g. src/App.tsx" },
                                "content": { "type": "string", "description": "The whole new content of the file." }
                            },
                            "required": ["path", "content"],
                            "additionalProperties": false
                        }
                    }
                },
                "required": ["files"],
                "additionalProperties": false
            }),
        ),
        ToolSpec::function(
            "readFiles",
            "Read files of the project. Paths are relative to the project root.",
            json!({
                "type": "object",
                "properties": { "files": { "type": "array", "items": { "type": "string" } } },
                "required": ["files"],
                "additionalProperties": false
            }),
        ),
        ToolSpec::function(
            "editFile",
            "Change one file by replacing a text that occurs exactly once in it. Use for small edits; include enough surrounding lines in `search` to make it unique.",
            json!({
                "type": "object",
                "properties": {
                    "path": { "type": "string", "description": "Relative path of the file." },
                    "search": { "type": "string", "description": "The exact text to find (must occur exactly once)." },
                    "replace": { "type": "string", "description": "The text to put in its place." }
                },
                "required": ["path", "search", "replace"],
                "additionalProperties": false
            }),
        ),
        ToolSpec::function(
            check::NAME,
            "Check the app as the person will see it: the type check, the dev server's compile errors and a load of the page in a headless browser (uncaught exceptions, console errors, a blank page). Returns each problem with its file and line. It also runs by itself when you finish.",
            json!({ "type": "object", "properties": {}, "additionalProperties": false }),
        ),
    ]
}

/// What running a tool produced.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolResult {
    /// Sent back to the model.
    pub content: String,
    pub ok: bool,
    pub exit_code: Option<i32>,
    /// Files written by the call.
    pub written: Vec<String>,
    /// The end of the output, for the progress view.
    pub tail: String,
}

impl ToolResult {
    fn error(message: impl Into<String>) -> Self {
        let content = format!("Error: {}", message.into());
        ToolResult {
            tail: tail(&content, 600),
            content,
            ok: false,
            exit_code: None,
            written: Vec::new(),
        }
    }
}

pub(crate) mod check;
mod edit;
mod read;
mod terminal;
mod write;

/// Runs one tool call against the sandbox. `Err` only when the sandbox itself broke. A
/// command's output goes to `progress` while it runs.
pub async fn execute(
    sandbox: &dyn Sandbox,
    name: &str,
    arguments: &str,
    run_opts: &RunOptions,
    progress: Option<mpsc::Sender<String>>,
) -> Result<ToolResult, SandboxError> {
    match name {
        terminal::NAME => terminal::run(sandbox, arguments, run_opts, progress).await,
        write::NAME => write::run(sandbox, arguments).await,
        read::NAME => read::run(sandbox, arguments).await,
        edit::NAME => edit::run(sandbox, arguments).await,
        check::NAME => check::run(sandbox).await,
        other => Ok(ToolResult::error(format!(
            "there is no tool named \"{other}\". The tools are: terminal, createOrUpdateFiles, readFiles, editFile, checkApp."
        ))),
    }
}

/// The result of a call whose arguments do not parse.
fn bad_args(name: &str, e: serde_json::Error) -> ToolResult {
    ToolResult::error(format!(
        "the arguments of {name} are not valid JSON for this tool ({e}). Send a JSON object as described in the tool's parameters."
    ))
}

/// A one-line description of a call for the progress view.
pub fn summarize(name: &str, arguments: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(arguments).unwrap_or_default();
    let paths = |key: &str| -> Vec<String> {
        v.get(key)
            .and_then(|f| f.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.get("path").or(Some(x)).and_then(|p| p.as_str()))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let text = match name {
        "terminal" => v
            .get("command")
            .and_then(|c| c.as_str())
            .unwrap_or("(no command)")
            .to_owned(),
        "createOrUpdateFiles" => {
            let p = paths("files");
            format!("Wrote {}", list(&p))
        }
        "readFiles" => format!("Read {}", list(&paths("files"))),
        "editFile" => format!(
            "Edited {}",
            v.get("path").and_then(|p| p.as_str()).unwrap_or("a file")
        ),
        "checkApp" => "Checked the app".to_owned(),
        other => format!("Called {other}"),
    };
    first_chars(&text.replace('\n', " "), 200)
}

fn list(p: &[String]) -> String {
    match p.len() {
        0 => "no files".to_owned(),
        1..=3 => p.join(", "),
        n => format!("{}, and {} more", p[..2].join(", "), n - 2),
    }
}

/// The last `max` characters of `s` (on a character boundary), marked when cut.
pub fn tail(s: &str, max: usize) -> String {
    let n = s.chars().count();
    if n <= max {
        return s.to_owned();
    }
    let skip = n - max;
    let cut: String = s.chars().skip(skip).collect();
    format!("[... {skip} characters before ...]\n{cut}")
}

pub fn first_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_owned(),
        Some((i, _)) => format!("{}…", &s[..i]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_are_short_and_readable() {
        assert_eq!(
            summarize("terminal", r#"{"command":"npm install date-fns"}"#),
            "npm install date-fns"
        );
        assert_eq!(
            summarize(
                "createOrUpdateFiles",
                r#"{"files":[{"path":"a","content":""},{"path":"b","content":""},{"path":"c","content":""},{"path":"d","content":""}]}"#
            ),
            "Wrote a, b, and 2 more"
        );
        assert_eq!(
            summarize("readFiles", r#"{"files":["src/App.tsx"]}"#),
            "Read src/App.tsx"
        );
        assert_eq!(summarize("editFile", r#"{"path":"x.ts"}"#), "Edited x.ts");
        assert_eq!(summarize("terminal", "not json"), "(no command)");
    }

    #[test]
    fn tails_cut_on_characters() {
        assert_eq!(tail("abc", 5), "abc");
        assert!(tail("üüüüü", 2).ends_with("üü"));
    }
}
