//! The agent: plans and builds an app by calling tools on a project's [`Sandbox`] until it
//! writes exactly one `<task_summary>`, then names the result and writes a friendly reply.
//!
//! The loop knows nothing of runs, databases or HTTP: it reports progress through an
//! [`EventSink`] and returns an [`Outcome`]. Cancellation is the caller's: dropping the future
//! stops the model request and the running command.

mod context;
pub mod prompts;
pub mod tools;

use std::time::Duration;

use async_trait::async_trait;
use codeflux_llm::{ChatMessage, ChatRequest, LlmClient, LlmError, LlmEvent, Usage};
use codeflux_protocol::{Role, RunEvent, Template};
use codeflux_sandbox::{RunOptions, Sandbox, SandboxError};

/// Where the agent reports progress.
#[async_trait]
pub trait EventSink: Send + Sync {
    async fn emit(&self, event: RunEvent);
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
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            max_iterations: 30,
            context_budget_chars: 160_000,
            history_messages: 10,
            command_timeout: Duration::from_secs(300),
            temperature: 0.1,
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
}

/// Why a run ended without a result.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{0}")]
    Llm(#[from] LlmError),
    #[error("{0}")]
    Sandbox(#[from] SandboxError),
    #[error(
        "The agent used all {0} of its steps without finishing. The files it wrote so far are kept in the sandbox; send a follow-up to continue."
    )]
    IterationLimit(usize),
}

impl AgentError {
    /// A short class name for events and logs.
    pub fn class(&self) -> &'static str {
        match self {
            AgentError::Llm(e) => e.kind.as_str(),
            AgentError::Sandbox(_) => "sandbox",
            AgentError::IterationLimit(_) => "iteration_limit",
        }
    }
}

/// The text of the one `<task_summary>` block, if the answer has one (the last, if several).
pub fn extract_summary(text: &str) -> Option<String> {
    let start_tag = "<task_summary>";
    let end_tag = "</task_summary>";
    let start = text.rfind(start_tag)? + start_tag.len();
    let end = text[start..]
        .find(end_tag)
        .map_or(text.len(), |e| start + e);
    let s = text[start..end].trim();
    (!s.is_empty()).then(|| s.to_owned())
}

/// A title out of what the model answered: at most three words, no quotes or punctuation.
pub fn clean_title(raw: &str, summary: &str) -> String {
    let pick = |s: &str| -> String {
        s.lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_default()
            .split_whitespace()
            .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()))
            .filter(|w| !w.is_empty() && !w.eq_ignore_ascii_case("title"))
            .take(3)
            .map(|w| {
                let mut c = w.chars();
                match c.next() {
                    Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
                    None => String::new(),
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let t = pick(raw);
    if !t.is_empty() {
        return t;
    }
    let t = pick(summary);
    if t.is_empty() {
        "Untitled".to_owned()
    } else {
        t
    }
}

/// Runs the agent on `sandbox` until it finishes, fails or reaches its step limit.
pub async fn run(
    llm: &LlmClient,
    sandbox: &dyn Sandbox,
    sink: &dyn EventSink,
    task: &Task,
    cfg: &AgentConfig,
) -> Result<Outcome, AgentError> {
    let files = sandbox.list_files().await?;
    let mut messages = vec![ChatMessage::system(prompts::system_prompt(task.template))];
    let history: Vec<&(Role, String)> = task
        .history
        .iter()
        .rev()
        .take(cfg.history_messages)
        .rev()
        .collect();
    for (role, text) in &history {
        let text = tools::first_chars(text, 4000);
        messages.push(match role {
            Role::User => ChatMessage::user(text),
            Role::Assistant => ChatMessage::assistant(text),
        });
    }
    let history_len = history.len();
    messages.push(ChatMessage::user(prompts::task_message(
        &task.prompt,
        &files,
        task.follow_up,
    )));

    let tool_specs = tools::specs();
    let run_opts = RunOptions {
        timeout: cfg.command_timeout,
        ..RunOptions::default()
    };
    let mut usage = Usage::default();
    let mut chars_sent = 0;
    let mut requests = 0;
    let mut written: Vec<String> = Vec::new();

    for iteration in 1..=cfg.max_iterations {
        let view = context::fit(&messages, cfg.context_budget_chars, 1, history_len);
        chars_sent += context::size(&view);
        requests += 1;
        let req = ChatRequest {
            messages: view,
            tools: tool_specs.clone(),
            temperature: Some(cfg.temperature),
            max_tokens: None,
        };
        let completion = stream_turn(llm, &req, sink).await?;
        if let Some(u) = completion.usage {
            usage += u;
        }
        messages.push(completion.to_message());
        let summary = extract_summary(&completion.content);

        if completion.tool_calls.is_empty() {
            if let Some(summary) = summary {
                return finish(
                    llm, summary, iteration, written, usage, chars_sent, requests,
                )
                .await;
            }
            messages.push(ChatMessage::user(prompts::CONTINUE_PROMPT));
            continue;
        }
        for call in &completion.tool_calls {
            sink.emit(RunEvent::ToolCall {
                call_id: call.id.clone(),
                name: call.function.name.clone(),
                summary: tools::summarize(&call.function.name, &call.function.arguments),
            })
            .await;
            let result = tools::execute(
                sandbox,
                &call.function.name,
                &call.function.arguments,
                &run_opts,
            )
            .await?;
            for path in &result.written {
                sink.emit(RunEvent::FileWritten { path: path.clone() })
                    .await;
                if !written.contains(path) {
                    written.push(path.clone());
                }
            }
            sink.emit(RunEvent::ToolOutput {
                call_id: call.id.clone(),
                ok: result.ok,
                exit_code: result.exit_code,
                tail: result.tail,
            })
            .await;
            messages.push(ChatMessage::Tool {
                tool_call_id: call.id.clone(),
                content: result.content,
            });
        }
        if let Some(summary) = summary {
            return finish(
                llm, summary, iteration, written, usage, chars_sent, requests,
            )
            .await;
        }
    }
    Err(AgentError::IterationLimit(cfg.max_iterations))
}

/// One model call, streaming its text to the sink.
async fn stream_turn(
    llm: &LlmClient,
    req: &ChatRequest,
    sink: &dyn EventSink,
) -> Result<codeflux_llm::Completion, AgentError> {
    let mut stream = llm.stream(req);
    while let Some(ev) = stream.next().await {
        match ev? {
            LlmEvent::TextDelta(text) => sink.emit(RunEvent::TextDelta { text }).await,
            LlmEvent::Retrying {
                attempt,
                max_attempts,
                reason,
                wait,
            } => {
                sink.emit(RunEvent::TextReset {
                    reason: reason.clone(),
                })
                .await;
                sink.emit(RunEvent::Notice {
                    message: format!(
                        "{reason} Trying again in {:.0} s (attempt {attempt} of {max_attempts}).",
                        wait.as_secs_f64().ceil()
                    ),
                })
                .await;
            }
            LlmEvent::ToolCallStarted { .. } => {}
            LlmEvent::Done(c) => return Ok(c),
        }
    }
    Err(AgentError::Llm(LlmError::protocol(
        "the model's answer ended without a result",
    )))
}

#[allow(clippy::too_many_arguments)] // the loop's tallies, passed once at the end
async fn finish(
    llm: &LlmClient,
    summary: String,
    iterations: usize,
    files_written: Vec<String>,
    mut usage: Usage,
    chars_sent: usize,
    requests: usize,
) -> Result<Outcome, AgentError> {
    let ask = |system: &'static str| ChatRequest {
        messages: vec![
            ChatMessage::system(system),
            ChatMessage::user(summary.clone()),
        ],
        tools: Vec::new(),
        temperature: Some(0.3),
        max_tokens: Some(120),
    };
    // Naming and the reply are niceties: if they fail, the run still succeeds.
    let title = match llm.complete(&ask(prompts::TITLE_PROMPT)).await {
        Ok(c) => {
            usage += c.usage.unwrap_or_default();
            clean_title(&c.content, &summary)
        }
        Err(e) => {
            tracing::warn!(error = %e.detail, "title call failed");
            clean_title("", &summary)
        }
    };
    let reply = match llm.complete(&ask(prompts::REPLY_PROMPT)).await {
        Ok(c) if !c.content.trim().is_empty() => {
            usage += c.usage.unwrap_or_default();
            c.content.trim().to_owned()
        }
        Ok(_) => summary.clone(),
        Err(e) => {
            tracing::warn!(error = %e.detail, "reply call failed");
            summary.clone()
        }
    };
    Ok(Outcome {
        summary,
        title,
        reply,
        iterations,
        files_written,
        usage,
        chars_sent,
        requests: requests + 2,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_are_found() {
        assert_eq!(
            extract_summary("done <task_summary> Built it. </task_summary>").as_deref(),
            Some("Built it.")
        );
        assert_eq!(
            extract_summary("<task_summary>a</task_summary> <task_summary>b</task_summary>")
                .as_deref(),
            Some("b")
        );
        assert_eq!(
            extract_summary("<task_summary>unclosed").as_deref(),
            Some("unclosed")
        );
        assert_eq!(extract_summary("no summary"), None);
        assert_eq!(extract_summary("<task_summary> </task_summary>"), None);
    }

    #[test]
    fn titles_are_three_words_at_most() {
        assert_eq!(
            clean_title("\"habit tracker app deluxe\"", ""),
            "Habit Tracker App"
        );
        assert_eq!(clean_title("Title: Todo", ""), "Todo");
        assert_eq!(
            clean_title("", "built a counter for you"),
            "Built A Counter"
        );
        assert_eq!(clean_title("", ""), "Untitled");
    }
}
