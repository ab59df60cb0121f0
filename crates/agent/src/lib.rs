//! The agent: plans and builds an app by calling tools on a project's [`Sandbox`] until it
//! writes its `<task_summary>` and the app passes its check (or the fix rounds are used up),
//! then names the result and writes a reply.
//!
//! The loop knows nothing of runs, databases or HTTP: it reports progress through an
//! [`EventSink`] and returns an [`Outcome`]. Cancellation is the caller's: dropping the future
//! stops the model request and the running command.
//!
//! - [`runner`]: the loop (native tool calls, or tool calls written as text for models
//!   without them; answers cut at the output limit; models that never act).
//! - [`verify`]: the check before finishing and the fix rounds.
//! - [`tools`]: one handler per tool.

mod context;
mod finish;
pub mod prompts;
mod runner;
mod summary;
mod textproto;
pub mod tools;
mod turn;
mod verify;

use std::time::Duration;

use async_trait::async_trait;
use codeflux_llm::{LlmError, Usage};
use codeflux_protocol::{CheckReport, Role, RunEvent, Template};
use codeflux_sandbox::SandboxError;

pub use runner::{Progress, run, run_resumable};
pub use summary::{clean_title, extract_summary};

/// Where the agent reports progress.
#[async_trait]
pub trait EventSink: Send + Sync {
    async fn emit(&self, event: RunEvent);
}

/// Where the loop stores its state before every model call, so that another process can
/// continue the run from there (repeating at most the step that was under way).
#[async_trait]
pub trait Checkpoints: Send + Sync {
    /// `Err` stops the run (e.g. [`AgentError::Superseded`]: another node holds it now).
    async fn save(&self, progress: &Progress) -> Result<(), AgentError>;
}

/// Limits of one run.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// Model calls with tools, at most.
    pub max_iterations: usize,
    /// Characters sent per request, about (4 characters ~ 1 token).
    pub context_budget_chars: usize,
    /// Earlier messages of the conversation given to the model.
    pub history_messages: usize,
    pub command_timeout: Duration,
    pub temperature: f32,
    /// Times the model is sent back to fix what the check found (CODEFLUX_FIX_ROUNDS).
    pub fix_rounds: u32,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            max_iterations: 30,
            context_budget_chars: 160_000,
            history_messages: 10,
            command_timeout: Duration::from_secs(300),
            temperature: 0.1,
            fix_rounds: 3,
        }
    }
}

/// What the agent is asked to do.
#[derive(Clone, Debug)]
pub struct Task {
    pub template: Template,
    /// Earlier conversation, oldest first (without the new request).
    pub history: Vec<(Role, String)>,
    /// The new request.
    pub prompt: String,
    /// Whether the project already has a version (a follow-up).
    pub follow_up: bool,
}

/// A finished run.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub summary: String,
    pub title: String,
    pub reply: String,
    pub iterations: usize,
    pub files_written: Vec<String>,
    pub usage: Usage,
    /// Characters of every request sent (a measure of context growth).
    pub chars_sent: usize,
    pub requests: usize,
    /// What the last check of the app found (None: this sandbox cannot check).
    pub checks: Option<CheckReport>,
}

/// The loop's running totals.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct Tally {
    pub usage: Usage,
    pub chars_sent: usize,
    pub requests: usize,
    pub iterations: usize,
    pub written: Vec<String>,
}

/// Why a run ended without a result.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{0}")]
    Llm(#[from] LlmError),
    #[error("{0}")]
    Sandbox(#[from] SandboxError),
    #[error("The agent used all {0} of its steps without finishing.")]
    IterationLimit(usize),
    #[error(
        "The model {model} does not call tools (neither natively nor written as text): it answered {answers} times without acting, so it cannot build anything. Pick another model, one that supports tool calling."
    )]
    NoToolUse { model: String, answers: usize },
    #[error(
        "The model's answers were cut off at its output limit {0} times in a row (finish_reason \"length\"), so its tool calls never arrived whole. Pick a model with a larger output limit, or ask for a smaller change."
    )]
    Truncated(u32),
    /// This execution lost the run: another node resumed it (this one was presumed dead).
    #[error("Another node continues this run.")]
    Superseded,
}

impl AgentError {
    /// A short class name for events and logs.
    pub fn class(&self) -> &'static str {
        match self {
            AgentError::Llm(e) => e.kind.as_str(),
            AgentError::Sandbox(_) => "sandbox",
            AgentError::IterationLimit(_) => "iteration_limit",
            AgentError::NoToolUse { .. } => "no_tool_use",
            AgentError::Truncated(_) => "output_limit",
            AgentError::Superseded => "superseded",
        }
    }
}
