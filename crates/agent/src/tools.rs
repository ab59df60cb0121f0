//! The agent's tools, named and shaped as in the original product (terminal,
//! createOrUpdateFiles, readFiles) plus editFile. A tool's own failure is returned to the model
//! as its result; only a broken sandbox ends the run.

use codeflux_llm::ToolSpec;
use codeflux_sandbox::{RunOptions, Sandbox, SandboxError};
use serde::Deserialize;
use serde_json::json;

/// Most characters of one tool result sent back to the model.
pub const MAX_RESULT_CHARS: usize = 24_000;
/// Most characters of one file's content in a readFiles result.
const MAX_READ_CHARS: usize = 60_000;

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

#[derive(Deserialize)]
struct TerminalArgs {
    command: String,
}

#[derive(Deserialize)]
struct FileArg {
    path: String,
    content: String,
}

#[derive(Deserialize)]
struct WriteArgs {
    files: Vec<FileArg>,
}

#[derive(Deserialize)]
struct ReadArgs {
    files: Vec<String>,
}

#[derive(Deserialize)]
struct EditArgs {
    path: String,
    search: String,
    replace: String,
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

/// Commands that would start a second dev server or block on a long-running process.
fn blocked_command(cmd: &str) -> Option<&'static str> {
    let c = cmd.trim();
    let starts = [
        "npm run dev",
        "npm start",
        "npm run start",
        "npx vite",
        "vite",
        "next dev",
        "npx next dev",
        "npm run preview",
        "vite preview",
    ];
    let has = |needle: &str| {
        c == needle
            || c.starts_with(&format!("{needle} "))
            || c.contains(&format!("&& {needle}"))
            || c.contains(&format!("; {needle}"))
    };
    if starts.iter().any(|s| has(s)) {
        return Some(
            "The dev server is already running and reloads on every change; do not start another one. Check your work by reading files or running the type checker (npm run typecheck).",
        );
    }
    None
}

/// Runs one tool call against the sandbox. `Err` only when the sandbox itself broke.
pub async fn execute(
    sandbox: &dyn Sandbox,
    name: &str,
    arguments: &str,
    run_opts: &RunOptions,
) -> Result<ToolResult, SandboxError> {
    let bad_args = |e: serde_json::Error| {
        ToolResult::error(format!(
            "the arguments of {name} are not valid JSON for this tool ({e}). Send a JSON object as described in the tool's parameters."
        ))
    };
    match name {
        "terminal" => {
            let args: TerminalArgs = match serde_json::from_str(arguments) {
                Ok(a) => a,
                Err(e) => return Ok(bad_args(e)),
            };
            if args.command.trim().is_empty() {
                return Ok(ToolResult::error("the command is empty"));
            }
            if let Some(why) = blocked_command(&args.command) {
                return Ok(ToolResult::error(why));
            }
            let r = sandbox.run(&args.command, run_opts, None).await?;
            let status = match (r.timed_out, r.exit_code) {
                (true, _) => format!(
                    "timed out after {} s and was stopped",
                    run_opts.timeout.as_secs()
                ),
                (false, Some(code)) => format!("exit code {code}"),
                (false, None) => "killed by a signal".to_owned(),
            };
            let body = if r.output.trim().is_empty() {
                "(no output)".to_owned()
            } else {
                tail(&r.output, MAX_RESULT_CHARS)
            };
            Ok(ToolResult {
                content: format!("{status}\n{body}"),
                ok: !r.timed_out && r.exit_code == Some(0),
                exit_code: r.exit_code,
                written: Vec::new(),
                tail: tail(&r.output, 1500),
            })
        }
        "createOrUpdateFiles" => {
            let args: WriteArgs = match serde_json::from_str(arguments) {
                Ok(a) => a,
                Err(e) => return Ok(bad_args(e)),
            };
            if args.files.is_empty() {
                return Ok(ToolResult::error("no files given"));
            }
            let mut written = Vec::new();
            let mut failed = Vec::new();
            for f in args.files {
                match sandbox.write_file(&f.path, &f.content).await {
                    Ok(()) => written
                        .push(codeflux_sandbox::workspace::clean_path(&f.path).unwrap_or(f.path)),
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
        "readFiles" => {
            let args: ReadArgs = match serde_json::from_str(arguments) {
                Ok(a) => a,
                Err(e) => return Ok(bad_args(e)),
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
        "editFile" => {
            let args: EditArgs = match serde_json::from_str(arguments) {
                Ok(a) => a,
                Err(e) => return Ok(bad_args(e)),
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
                    let path =
                        codeflux_sandbox::workspace::clean_path(&args.path).unwrap_or(args.path);
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
        other => Ok(ToolResult::error(format!(
            "there is no tool named \"{other}\". The tools are: terminal, createOrUpdateFiles, readFiles, editFile."
        ))),
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
    fn dev_servers_are_not_started_twice() {
        assert!(blocked_command("npm run dev").is_some());
        assert!(blocked_command("cd . && npm run dev -- --port 3000").is_some());
        assert!(blocked_command("npm install vite-plugin-x").is_none());
        assert!(blocked_command("npm run typecheck").is_none());
    }

    #[test]
    fn tails_cut_on_characters() {
        assert_eq!(tail("abc", 5), "abc");
        assert!(tail("üüüüü", 2).ends_with("üü"));
    }
}
