//! What the automatic check of a run's app found (type check, dev server, page load).

use serde::{Deserialize, Serialize};

/// One problem, with where it is when known.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// A path in the project (`src/App.tsx`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    pub message: String,
}

impl Problem {
    /// `src/App.tsx:2: message`, or the message alone.
    pub fn line_text(&self) -> String {
        match (&self.file, self.line) {
            (Some(f), Some(l)) => format!("{f}:{l}: {}", self.message),
            (Some(f), None) => format!("{f}: {}", self.message),
            _ => self.message.clone(),
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Passed,
    Failed,
    /// Could not be run (no type checker in the project, no dev server, no browser).
    Skipped,
}

/// One kind of check.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct CheckItem {
    /// "type check", "dev server", "page load".
    pub name: String,
    pub status: CheckStatus,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<Problem>,
    /// Why it was skipped, or a note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// How long it took, in milliseconds.
    pub ms: u64,
}

/// Everything one check of the app found.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct CheckReport {
    pub items: Vec<CheckItem>,
    /// Fix rounds the run used after its checks failed.
    #[serde(default)]
    pub rounds: u32,
}

impl CheckReport {
    /// No check failed (skipped ones do not count).
    pub fn passed(&self) -> bool {
        self.items.iter().all(|i| i.status != CheckStatus::Failed)
    }

    /// Every problem of the failed checks.
    pub fn problems(&self) -> Vec<&Problem> {
        self.items
            .iter()
            .filter(|i| i.status == CheckStatus::Failed)
            .flat_map(|i| i.problems.iter())
            .collect()
    }

    /// "type check, dev server and page load" (the checks that ran).
    pub fn names(&self) -> String {
        let ran: Vec<&str> = self
            .items
            .iter()
            .filter(|i| i.status != CheckStatus::Skipped)
            .map(|i| i.name.as_str())
            .collect();
        match ran.len() {
            0 => "nothing".into(),
            1 => ran[0].into(),
            n => format!("{} and {}", ran[..n - 1].join(", "), ran[n - 1]),
        }
    }

    /// The problems as lines for the model or a person (at most `max`).
    pub fn problem_lines(&self, max: usize) -> String {
        let all = self.problems();
        let mut out: Vec<String> = all
            .iter()
            .take(max)
            .map(|p| format!("- {}", p.line_text()))
            .collect();
        if all.len() > max {
            out.push(format!("- … and {} more", all.len() - max));
        }
        out.join("\n")
    }
}
