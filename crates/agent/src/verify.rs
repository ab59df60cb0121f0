//! The check before a run may finish: when the model writes its `<task_summary>`, the app is
//! checked in the sandbox (type check, dev server, a page load in a headless browser). Errors go
//! back to the model, unasked, for a bounded number of fix rounds.

use codeflux_protocol::{CheckReport, RunEvent};
use codeflux_sandbox::Sandbox;

use crate::EventSink;

/// What to do with a proposed finish.
pub(crate) enum Verdict {
    /// Finish, with what the check found (None: nothing could be checked).
    Accept(Option<CheckReport>),
    /// Not yet: this goes back to the model.
    Fix(String),
}

/// Checks the app after the model proposed to finish; `round` fix rounds were used so far.
pub(crate) async fn verify(
    sandbox: &dyn Sandbox,
    sink: &dyn EventSink,
    round: u32,
    max_rounds: u32,
) -> Verdict {
    sink.emit(RunEvent::Notice {
        message: if round == 0 {
            format!("Checking the app: {}…", sandbox.check_plan())
        } else {
            format!("Checking the app again after fix round {round}…")
        },
    })
    .await;
    let mut report = match sandbox.check().await {
        Ok(Some(r)) => r,
        Ok(None) => return Verdict::Accept(None),
        Err(e) => {
            tracing::warn!(error = %e, "checking the app failed");
            sink.emit(RunEvent::Notice {
                message: format!("The app could not be checked: {e}."),
            })
            .await;
            return Verdict::Accept(None);
        }
    };
    report.rounds = round;
    let passed = report.passed();
    sink.emit(RunEvent::Checked {
        passed,
        round,
        report: report.clone(),
    })
    .await;
    if passed || round >= max_rounds {
        return Verdict::Accept(Some(report));
    }
    Verdict::Fix(feedback(&report, round + 1, max_rounds))
}

/// The result of the unasked `checkApp` call the model gets when the check failed.
fn feedback(report: &CheckReport, round: u32, max_rounds: u32) -> String {
    format!(
        "Automatic check after your <task_summary> (run by the app builder, not asked by the person). {}\n\nThe work is not finished. Fix the causes with the tools (read the files first when needed), then end again with exactly one <task_summary>. This is fix round {round} of {max_rounds}.",
        crate::tools::check::describe(report),
    )
}

/// The reply of a run whose app still fails its check after the fix rounds: says so plainly.
pub(crate) fn failed_reply(summary: &str, report: &CheckReport) -> String {
    let rounds = match report.rounds {
        0 => "and there was no fix round left".to_owned(),
        1 => "after 1 fix round".to_owned(),
        n => format!("after {n} fix rounds"),
    };
    format!(
        "{summary}\n\n**Warning:** the automatic check ({}) still finds errors {rounds}, so this version probably does not work as intended:\n\n{}\n\nUse **Fix it** to let the agent try again, or describe what you see.",
        report.names(),
        report.problem_lines(8)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use codeflux_protocol::{CheckItem, CheckStatus, Problem};

    fn report(status: CheckStatus) -> CheckReport {
        CheckReport {
            items: vec![CheckItem {
                name: "type check".into(),
                status,
                problems: vec![Problem {
                    file: Some("src/App.tsx".into()),
                    line: Some(2),
                    message: "TS2322: Type 'string' is not assignable to type 'number'.".into(),
                }],
                note: None,
                ms: 1,
            }],
            rounds: 3,
        }
    }

    #[test]
    fn feedback_names_file_line_and_round() {
        let f = feedback(&report(CheckStatus::Failed), 2, 3);
        assert!(f.contains("src/App.tsx:2: TS2322"), "{f}");
        assert!(f.contains("fix round 2 of 3"), "{f}");
    }

    #[test]
    fn a_failed_reply_is_a_warning() {
        let r = failed_reply("Built a page.", &report(CheckStatus::Failed));
        assert!(r.starts_with("Built a page."));
        assert!(r.contains("Warning") && r.contains("after 3 fix rounds") && r.contains("TS2322"));
    }
}
