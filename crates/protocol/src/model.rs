use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::AppError;

/// The starter a project's sandbox is cloned from.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Template {
    /// Vite + React + TypeScript + Tailwind with ready UI components (the default).
    #[default]
    #[serde(rename = "vite-react")]
    ViteReact,
    /// Next.js 15 + Tailwind + shadcn/ui, as in the original product.
    #[serde(rename = "nextjs")]
    NextJs,
}

impl Template {
    pub const ALL: [Template; 2] = [Template::ViteReact, Template::NextJs];

    /// The identifier used on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Template::ViteReact => "vite-react",
            Template::NextJs => "nextjs",
        }
    }

    /// The name shown to people.
    pub fn label(self) -> &'static str {
        match self {
            Template::ViteReact => "Vite React",
            Template::NextJs => "Next.js",
        }
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Template {
    type Err = AppError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim();
        Template::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(wanted))
            .ok_or_else(|| {
                let known: Vec<&str> = Template::ALL.iter().map(|t| t.as_str()).collect();
                AppError::bad_input(format!(
                    "Unknown template \"{}\". Choose one of: {}.",
                    crate::validate::shorten(wanted, 40),
                    known.join(", ")
                ))
            })
    }
}

/// Who wrote a message.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Role {
    User,
    Assistant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "USER",
            Role::Assistant => "ASSISTANT",
        }
    }
}

/// Whether an assistant message is a result or reports a failure. User messages are RESULT.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MessageKind {
    Result,
    Error,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Result => "RESULT",
            MessageKind::Error => "ERROR",
        }
    }
}

/// A project: one app being built, with its conversation.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Project {
    pub id: Uuid,
    /// A readable generated name such as "brave-golden-otter".
    pub name: String,
    pub template: Template,
    /// The start of the first prompt, for lists.
    pub description: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The account it belongs to (None: made with accounts off).
    #[serde(default)]
    pub owner_id: Option<Uuid>,
}

/// One message of a project's conversation, with the fragment it produced, if any.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Message {
    pub id: Uuid,
    pub project_id: Uuid,
    pub content: String,
    pub role: Role,
    #[serde(rename = "type")]
    pub kind: MessageKind,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub fragment: Option<Fragment>,
    /// The run that wrote this assistant message (its steps are that run's events).
    #[serde(default)]
    pub run_id: Option<Uuid>,
    /// The model that answered.
    #[serde(default)]
    pub model: Option<String>,
    /// Tokens (and cost) the run's model calls used, as the provider counted them.
    #[serde(default)]
    pub usage: Option<crate::TokenUsage>,
    /// What the check of the app found before the run finished.
    #[serde(default)]
    pub checks: Option<crate::CheckReport>,
    /// The text rendered from Markdown and sanitized, by the server (assistant messages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
}

impl Message {
    /// The app of this version failed its check (shown as a warning).
    pub fn warned(&self) -> bool {
        self.checks.as_ref().is_some_and(|c| !c.passed())
    }
}

/// A version of the generated app: the full file snapshot and where its preview lives.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Fragment {
    pub id: Uuid,
    pub message_id: Uuid,
    pub sandbox_url: String,
    pub title: String,
    /// Every source file of the project at this version, path -> content.
    pub files: BTreeMap<String, String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_parses_known_names_and_rejects_others() {
        assert_eq!("vite-react".parse::<Template>(), Ok(Template::ViteReact));
        assert_eq!(" NextJS ".parse::<Template>(), Ok(Template::NextJs));
        let err = "cobol-app".parse::<Template>().unwrap_err();
        assert_eq!(err.kind, crate::ErrorKind::BadInput);
        assert!(err.message.contains("cobol-app"));
        assert!(err.message.contains("vite-react, nextjs"));
    }

    #[test]
    fn wire_names_match_the_interface() {
        let json = serde_json::to_string(&(Role::User, MessageKind::Error, Template::NextJs))
            .expect("serialize");
        assert_eq!(json, r#"["USER","ERROR","nextjs"]"#);
    }
}

/// Everything the project page needs at once.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ProjectView {
    pub project: Project,
    /// Oldest first.
    pub messages: Vec<Message>,
    /// Queued and running runs, oldest first.
    pub active_runs: Vec<crate::Run>,
    /// The event number to follow the runs from (the SSE `last_event_id`).
    pub resume_from: i64,
    /// Where the project's live preview is.
    pub preview_url: String,
}
