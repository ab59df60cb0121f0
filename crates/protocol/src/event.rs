//! What a run reports while it works, as stored and as streamed over SSE.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One step of a run's progress. Serialized with a `type` tag in snake_case.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RunEvent {
    /// A run was accepted and waits for its turn (another run of the project, or a free slot).
    RunQueued { message_id: Uuid, position: u32 },
    /// The run started working.
    RunStarted { message_id: Uuid },
    /// Visible text from the model, as it arrives.
    TextDelta { text: String },
    /// The model call was repeated: text streamed since the last tool step is void.
    TextReset { reason: String },
    /// The agent called a tool.
    ToolCall {
        call_id: String,
        name: String,
        /// A one-line description ("npm install date-fns", "Wrote 3 files").
        summary: String,
    },
    /// A tool finished: the end of its output.
    ToolOutput {
        call_id: String,
        ok: bool,
        exit_code: Option<i32>,
        tail: String,
    },
    /// Output of a command while it runs (bounded per command; the tail comes with its
    /// `tool_output`).
    ToolProgress { call_id: String, text: String },
    /// A file was created or changed.
    FileWritten { path: String },
    /// What one model call used, as the provider counted it.
    Usage {
        prompt_tokens: u64,
        completion_tokens: u64,
        /// US dollars, when the provider reports it (or a configured price table gives it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cost_usd: Option<f64>,
        /// The model that answered.
        model: String,
    },
    /// Something worth telling while the run goes on (a retry, a limit).
    Notice { message: String },
    /// The app was checked after the model proposed to finish.
    Checked {
        passed: bool,
        /// Which fix round this check ends (0: the first check).
        round: u32,
        report: crate::CheckReport,
    },
    /// Reasoning text from the model (shown collapsed as "Thinking", never sent back).
    ReasoningDelta { text: String },
    /// The run is done: its reply message and the version it produced (the files themselves
    /// are in the message's fragment).
    RunFinished {
        message_id: Uuid,
        fragment_id: Uuid,
        title: String,
        sandbox_url: String,
        file_count: u32,
    },
    /// The run failed; an ERROR message says why.
    RunFailed {
        message_id: Uuid,
        reason: String,
        class: String,
    },
    /// Stopped by the person.
    RunCancelled { message_id: Uuid },
    /// The server stopped while the run was working.
    RunInterrupted { message_id: Uuid },
}

impl RunEvent {
    /// The SSE event name (the serde tag).
    pub fn kind(&self) -> &'static str {
        match self {
            RunEvent::RunQueued { .. } => "run_queued",
            RunEvent::RunStarted { .. } => "run_started",
            RunEvent::TextDelta { .. } => "text_delta",
            RunEvent::TextReset { .. } => "text_reset",
            RunEvent::ToolCall { .. } => "tool_call",
            RunEvent::ToolOutput { .. } => "tool_output",
            RunEvent::ToolProgress { .. } => "tool_progress",
            RunEvent::FileWritten { .. } => "file_written",
            RunEvent::Usage { .. } => "usage",
            RunEvent::Notice { .. } => "notice",
            RunEvent::Checked { .. } => "checked",
            RunEvent::ReasoningDelta { .. } => "reasoning_delta",
            RunEvent::RunFinished { .. } => "run_finished",
            RunEvent::RunFailed { .. } => "run_failed",
            RunEvent::RunCancelled { .. } => "run_cancelled",
            RunEvent::RunInterrupted { .. } => "run_interrupted",
        }
    }

    /// Whether this event ends a run.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            RunEvent::RunFinished { .. }
                | RunEvent::RunFailed { .. }
                | RunEvent::RunCancelled { .. }
                | RunEvent::RunInterrupted { .. }
        )
    }
}

/// An event as stored: numbered per project (the SSE id), with its run.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct StoredEvent {
    pub seq: i64,
    pub project_id: Uuid,
    pub run_id: Uuid,
    pub at: DateTime<Utc>,
    #[serde(flatten)]
    pub event: RunEvent,
}

/// A run's state.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Queued,
    Running,
    Finished,
    Failed,
    Cancelled,
    Interrupted,
}

impl RunStatus {
    pub const ALL: [RunStatus; 6] = [
        RunStatus::Queued,
        RunStatus::Running,
        RunStatus::Finished,
        RunStatus::Failed,
        RunStatus::Cancelled,
        RunStatus::Interrupted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Finished => "finished",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Interrupted => "interrupted",
        }
    }

    pub fn parse(s: &str) -> Option<RunStatus> {
        RunStatus::ALL.into_iter().find(|r| r.as_str() == s)
    }

    pub fn is_active(self) -> bool {
        matches!(self, RunStatus::Queued | RunStatus::Running)
    }
}

/// A run as the page sees it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Run {
    pub id: Uuid,
    pub project_id: Uuid,
    pub message_id: Uuid,
    pub status: RunStatus,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The model the run was asked to use (None: the server's default).
    #[serde(default)]
    pub model: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialize_flat_with_a_type_tag() {
        let e = StoredEvent {
            seq: 7,
            project_id: Uuid::nil(),
            run_id: Uuid::nil(),
            at: DateTime::<Utc>::from_timestamp(0, 0).unwrap_or_default(),
            event: RunEvent::ToolCall {
                call_id: "c1".into(),
                name: "terminal".into(),
                summary: "ls".into(),
            },
        };
        let v = serde_json::to_value(&e).unwrap_or_default();
        assert_eq!(v["type"], "tool_call");
        assert_eq!(v["seq"], 7);
        assert_eq!(v["name"], "terminal");
        let back: StoredEvent = serde_json::from_value(v).unwrap_or_else(|_| e.clone());
        assert_eq!(back, e);
        assert_eq!(e.event.kind(), "tool_call");
    }
}
