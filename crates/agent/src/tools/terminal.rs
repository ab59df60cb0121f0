//! `terminal`: a shell command in the project directory, its output streamed while it runs.

use codeflux_sandbox::{RunOptions, Sandbox, SandboxError};
use serde::Deserialize;
use tokio::sync::mpsc;

use super::{MAX_RESULT_CHARS, ToolResult, tail};

pub(super) const NAME: &str = "terminal";

#[derive(Deserialize)]
struct TerminalArgs {
    command: String,
}

pub(super) async fn run(
    sandbox: &dyn Sandbox,
    arguments: &str,
    run_opts: &RunOptions,
    progress: Option<mpsc::Sender<String>>,
) -> Result<ToolResult, SandboxError> {
    let args: TerminalArgs = match serde_json::from_str(arguments) {
        Ok(a) => a,
        Err(e) => return Ok(super::bad_args(NAME, e)),
    };
    if args.command.trim().is_empty() {
        return Ok(ToolResult::error("the command is empty"));
    }
    if let Some(why) = blocked_command(&args.command) {
        return Ok(ToolResult::error(why));
    }
    let r = sandbox.run(&args.command, run_opts, progress).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_servers_are_not_started_twice() {
        assert!(blocked_command("npm run dev").is_some());
        assert!(blocked_command("cd . && npm run dev -- --port 3000").is_some());
        assert!(blocked_command("npm install vite-plugin-x").is_none());
        assert!(blocked_command("npm run typecheck").is_none());
    }
}
