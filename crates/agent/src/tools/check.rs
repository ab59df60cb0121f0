//! `checkApp`: the same check that runs when the model proposes to finish (type check, dev
//! server, a page load in a headless browser), on demand. When the model finishes with a
//! failing app, the run answers with this tool's result unasked (see `verify`).

use codeflux_protocol::CheckReport;
use codeflux_sandbox::{Sandbox, SandboxError};

use super::ToolResult;

pub(crate) const NAME: &str = "checkApp";

/// Problems listed to the model per check.
pub(crate) const MAX_PROBLEMS_SENT: usize = 15;

pub(super) async fn run(sandbox: &dyn Sandbox) -> Result<ToolResult, SandboxError> {
    let report = match sandbox.check().await {
        Ok(Some(r)) => r,
        Ok(None) => return Ok(ToolResult::error("this sandbox cannot check the app")),
        Err(SandboxError::Stopped) => return Err(SandboxError::Stopped),
        Err(e) => {
            return Ok(ToolResult::error(format!(
                "the app could not be checked: {e}"
            )));
        }
    };
    let content = describe(&report);
    Ok(ToolResult {
        tail: super::tail(&content, 600),
        ok: report.passed(),
        content,
        exit_code: None,
        written: Vec::new(),
    })
}

/// The report as the model reads it.
pub(crate) fn describe(report: &CheckReport) -> String {
    if report.passed() {
        format!("All checks passed ({}).", report.names())
    } else {
        format!(
            "The {} found problems:\n\n{}",
            report.names(),
            report.problem_lines(MAX_PROBLEMS_SENT)
        )
    }
}
