//! A run's work as the person reviews it: its steps folded from the run's events. The same fold
//! serves the stored events (after a reload) and the live ones (while the run works).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{CheckReport, RunEvent};

/// Characters kept of one step's text or reasoning.
const MAX_TEXT: usize = 8_000;
/// Characters kept of one command's streamed output (its end).
const MAX_OUTPUT: usize = 16_000;
/// Steps kept per run.
const MAX_STEPS: usize = 400;

/// One step of a run.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WorkStep {
    /// What the model wrote between tool calls.
    Text { text: String },
    /// The model's reasoning ("Thinking"), never sent back to it.
    Thinking { text: String },
    /// A tool call and, once done, its result.
    Tool {
        call_id: String,
        name: String,
        /// The call's arguments in short ("npm install zod", "Wrote src/App.tsx").
        summary: String,
        /// None while it runs.
        ok: Option<bool>,
        exit_code: Option<i32>,
        /// The end of its result.
        tail: String,
        /// Output streamed while it ran (the end of it).
        output: String,
        files: Vec<String>,
    },
    /// A check of the app.
    Check {
        passed: bool,
        round: u32,
        report: CheckReport,
    },
    /// Something the run told (a retry, a switch of protocol).
    Notice { message: String },
}

/// The steps of one run.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct WorkLog {
    pub run_id: Uuid,
    pub steps: Vec<WorkStep>,
    /// Steps were left out (the run had more than are kept).
    #[serde(default)]
    pub truncated: bool,
}

fn keep_end(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = s.len() - max;
        while !s.is_char_boundary(cut) {
            cut += 1;
        }
        s.drain(..cut);
    }
}

fn append(s: &mut String, more: &str, max: usize) {
    if s.len() < max {
        let room = max - s.len();
        let mut end = more.len().min(room);
        while !more.is_char_boundary(end) {
            end -= 1;
        }
        s.push_str(&more[..end]);
    }
}

impl WorkLog {
    pub fn new(run_id: Uuid) -> Self {
        Self {
            run_id,
            ..Self::default()
        }
    }

    fn push(&mut self, step: WorkStep) {
        if self.steps.len() < MAX_STEPS {
            self.steps.push(step);
        } else {
            self.truncated = true;
        }
    }

    fn tool_mut(&mut self, call_id: &str) -> Option<&mut WorkStep> {
        self.steps
            .iter_mut()
            .rev()
            .find(|s| matches!(s, WorkStep::Tool { call_id: c, .. } if c == call_id))
    }

    /// Folds one event of the run into the log.
    pub fn apply(&mut self, event: &RunEvent) {
        match event {
            RunEvent::TextDelta { text } => match self.steps.last_mut() {
                Some(WorkStep::Text { text: t }) => append(t, text, MAX_TEXT),
                _ => self.push(WorkStep::Text {
                    text: text.chars().take(MAX_TEXT).collect(),
                }),
            },
            RunEvent::ReasoningDelta { text } => match self.steps.last_mut() {
                Some(WorkStep::Thinking { text: t }) => append(t, text, MAX_TEXT),
                _ => self.push(WorkStep::Thinking {
                    text: text.chars().take(MAX_TEXT).collect(),
                }),
            },
            RunEvent::TextReset { .. } => {
                // The text of the failed attempt is void.
                while matches!(
                    self.steps.last(),
                    Some(WorkStep::Text { .. } | WorkStep::Thinking { .. })
                ) {
                    self.steps.pop();
                }
            }
            RunEvent::ToolCall {
                call_id,
                name,
                summary,
            } => self.push(WorkStep::Tool {
                call_id: call_id.clone(),
                name: name.clone(),
                summary: summary.clone(),
                ok: None,
                exit_code: None,
                tail: String::new(),
                output: String::new(),
                files: Vec::new(),
            }),
            RunEvent::ToolProgress { call_id, text } => {
                if let Some(WorkStep::Tool { output, .. }) = self.tool_mut(call_id) {
                    output.push_str(text);
                    keep_end(output, MAX_OUTPUT);
                }
            }
            RunEvent::ToolOutput {
                call_id,
                ok,
                exit_code,
                tail,
            } => {
                if let Some(WorkStep::Tool {
                    ok: o,
                    exit_code: e,
                    tail: t,
                    ..
                }) = self.tool_mut(call_id)
                {
                    *o = Some(*ok);
                    *e = *exit_code;
                    *t = tail.clone();
                }
            }
            RunEvent::FileWritten { path } => {
                if let Some(WorkStep::Tool { files, .. }) = self
                    .steps
                    .iter_mut()
                    .rev()
                    .find(|s| matches!(s, WorkStep::Tool { .. }))
                    && !files.contains(path)
                {
                    files.push(path.clone());
                }
            }
            RunEvent::Checked {
                passed,
                round,
                report,
            } => self.push(WorkStep::Check {
                passed: *passed,
                round: *round,
                report: report.clone(),
            }),
            RunEvent::Notice { message } => self.push(WorkStep::Notice {
                message: message.clone(),
            }),
            _ => {}
        }
    }

    /// Tool calls made.
    pub fn tool_steps(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| matches!(s, WorkStep::Tool { .. }))
            .count()
    }

    /// Files written, each once, in the order first written.
    pub fn files(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for s in &self.steps {
            if let WorkStep::Tool { files, .. } = s {
                for f in files {
                    if !out.contains(f) {
                        out.push(f.clone());
                    }
                }
            }
        }
        out
    }

    /// Commands run in the terminal.
    pub fn commands(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| matches!(s, WorkStep::Tool { name, .. } if name == "terminal"))
            .count()
    }

    /// The last check's verdict, if the app was checked.
    pub fn checked(&self) -> Option<bool> {
        self.steps.iter().rev().find_map(|s| match s {
            WorkStep::Check { passed, .. } => Some(*passed),
            _ => None,
        })
    }

    /// "9 steps · 6 files · 2 commands · checked".
    pub fn summary_line(&self) -> String {
        let n = |count: usize, one: &str, many: &str| {
            format!("{count} {}", if count == 1 { one } else { many })
        };
        let mut parts = vec![
            n(self.tool_steps(), "step", "steps"),
            n(self.files().len(), "file", "files"),
            n(self.commands(), "command", "commands"),
        ];
        match self.checked() {
            Some(true) => parts.push("checked".into()),
            Some(false) => parts.push("check failed".into()),
            None => {}
        }
        parts.join(" · ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_fold_into_steps() {
        let mut log = WorkLog::new(Uuid::nil());
        let call = |id: &str, name: &str| RunEvent::ToolCall {
            call_id: id.into(),
            name: name.into(),
            summary: "s".into(),
        };
        log.apply(&RunEvent::TextDelta {
            text: "Plan".into(),
        });
        log.apply(&RunEvent::TextDelta {
            text: "ning".into(),
        });
        log.apply(&call("a", "createOrUpdateFiles"));
        log.apply(&RunEvent::FileWritten {
            path: "src/App.tsx".into(),
        });
        log.apply(&RunEvent::ToolOutput {
            call_id: "a".into(),
            ok: true,
            exit_code: None,
            tail: "Wrote".into(),
        });
        log.apply(&call("b", "terminal"));
        log.apply(&RunEvent::ToolProgress {
            call_id: "b".into(),
            text: "added 1 package".into(),
        });
        log.apply(&RunEvent::ToolOutput {
            call_id: "b".into(),
            ok: false,
            exit_code: Some(1),
            tail: "err".into(),
        });
        log.apply(&RunEvent::TextDelta {
            text: "void".into(),
        });
        log.apply(&RunEvent::TextReset { reason: "r".into() });
        log.apply(&RunEvent::Checked {
            passed: true,
            round: 0,
            report: CheckReport::default(),
        });
        assert_eq!(log.steps.len(), 4);
        assert_eq!(
            log.steps[0],
            WorkStep::Text {
                text: "Planning".into()
            }
        );
        assert_eq!(log.files(), vec!["src/App.tsx".to_owned()]);
        assert_eq!(log.summary_line(), "2 steps · 1 file · 1 command · checked");
        let WorkStep::Tool {
            output, exit_code, ..
        } = &log.steps[2]
        else {
            panic!("tool")
        };
        assert_eq!((output.as_str(), *exit_code), ("added 1 package", Some(1)));
    }
}
