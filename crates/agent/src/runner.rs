//! The loop: ask the model, run the tools it calls, until it proposes to finish and the check
//! accepts, the step limit is reached, or it is clear the model cannot act.

use std::time::{Duration, Instant};

use codeflux_llm::{ChatMessage, ChatRequest, FunctionCall, LlmClient, ToolCall, ToolSpec};
use codeflux_protocol::{Role, RunEvent};
use codeflux_sandbox::{RunOptions, Sandbox};
use tokio::sync::mpsc;

use crate::summary::extract_summary;
use crate::verify::{Verdict, verify};
use crate::{
    AgentConfig, AgentError, EventSink, Outcome, Tally, Task, context, finish, prompts, textproto,
    tools, turn,
};

/// Answers in a row without a tool call after which a model that never made a native call
/// is switched to tool calls written as text.
const IDLE_BEFORE_TEXT_MODE: u32 = 2;
/// Answers in a row without a tool call after which the run ends (the model cannot act).
const IDLE_LIMIT: u32 = 4;
/// Answers in a row cut off at the output limit after which the run ends.
const CUT_LIMIT: u32 = 3;
/// Command output streamed per command, at most (the whole tail still comes at the end).
const PROGRESS_BYTES: usize = 64 * 1024;
/// Streamed output is sent in pieces of about this size, or this often.
const PROGRESS_CHUNK: usize = 2048;
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The provider's own tool calls.
    Native,
    /// Tool calls written as `<tool_call>` blocks in the text.
    Text,
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

    let specs = tools::specs();
    let run_opts = RunOptions {
        timeout: cfg.command_timeout,
        ..RunOptions::default()
    };
    let mut tally = Tally::default();
    let mut mode = Mode::Native;
    let mut native_calls = 0usize;
    let mut text_calls = 0usize;
    let mut idle = 0u32;
    let mut cut = 0u32;
    let mut fix_round = 0u32;

    for iteration in 1..=cfg.max_iterations {
        tally.iterations = iteration;
        let req = request(&messages, mode, &specs, cfg, history_len);
        tally.chars_sent += context::size(&req.messages);
        tally.requests += 1;
        let completion = turn::stream_turn(llm, &req, sink).await?;
        if let Some(u) = completion.usage {
            tally.usage += u;
        }
        let summary = extract_summary(&completion.content);
        let (text, mut calls) = if mode == Mode::Text
            || (completion.tool_calls.is_empty() && completion.content.contains("<tool_call>"))
        {
            let (text, calls) = textproto::parse(&completion.content, text_calls);
            if mode == Mode::Native && !calls.is_empty() {
                mode = Mode::Text;
                sink.emit(RunEvent::Notice {
                    message: "The model writes its tool calls as text; they are read from its answers from now on.".into(),
                })
                .await;
            }
            text_calls += calls.len();
            (text, calls)
        } else {
            native_calls += completion.tool_calls.len();
            (completion.content.clone(), completion.tool_calls.clone())
        };

        // An answer cut at the output limit: a call with incomplete arguments is never run.
        let truncated = completion.finish_reason.as_deref() == Some("length");
        let before = calls.len();
        if truncated {
            calls.retain(|c| {
                serde_json::from_str::<serde_json::Value>(&c.function.arguments).is_ok()
            });
        }
        let lost = before - calls.len();
        messages.push(ChatMessage::Assistant {
            content: (!text.is_empty()).then(|| text.clone()),
            tool_calls: calls.clone(),
        });
        if !calls.is_empty() {
            idle = 0;
            run_calls(sandbox, sink, &calls, &run_opts, &mut messages, &mut tally).await?;
        }
        if truncated && (lost > 0 || (calls.is_empty() && summary.is_none())) {
            cut += 1;
            if cut >= CUT_LIMIT {
                return Err(AgentError::Truncated(cut));
            }
            sink.emit(RunEvent::Notice {
                message: "The model's answer was cut off at its output limit; asking it to go on in smaller pieces.".into(),
            })
            .await;
            messages.push(ChatMessage::user(prompts::CUT_PROMPT));
            continue;
        }
        cut = 0;
        if let Some(summary) = summary {
            match verify(sandbox, sink, fix_round, cfg.fix_rounds).await {
                Verdict::Fix(feedback) => {
                    fix_round += 1;
                    answer_unasked_check(&mut messages, fix_round, feedback);
                    continue;
                }
                Verdict::Accept(checks) => {
                    return Ok(finish::finish(llm, sink, summary, checks, tally).await);
                }
            }
        }
        if calls.is_empty() {
            idle += 1;
            if mode == Mode::Native && native_calls == 0 && idle >= IDLE_BEFORE_TEXT_MODE {
                mode = Mode::Text;
                idle = 0;
                sink.emit(RunEvent::Notice {
                    message: "The model answered twice without calling a tool; switching to tool calls written as text.".into(),
                })
                .await;
            } else if (mode == Mode::Text && native_calls == 0 && text_calls == 0 && idle >= 2)
                || idle >= IDLE_LIMIT
            {
                return Err(AgentError::NoToolUse {
                    model: llm.endpoint().model.clone(),
                    answers: iteration,
                });
            }
            messages.push(ChatMessage::user(match mode {
                Mode::Native => prompts::CONTINUE_PROMPT,
                Mode::Text => prompts::CONTINUE_TEXT_PROMPT,
            }));
        }
    }
    Err(AgentError::IterationLimit(cfg.max_iterations))
}

/// The failed check goes back as the result of a `checkApp` call the run adds to the model's
/// last answer: the model reads it as a tool result it did not ask for (a tool result must
/// answer a call in the chat protocol).
fn answer_unasked_check(messages: &mut Vec<ChatMessage>, round: u32, feedback: String) {
    let id = format!("cf_check_{round}");
    if let Some(ChatMessage::Assistant { tool_calls, .. }) = messages
        .iter_mut()
        .rev()
        .find(|m| matches!(m, ChatMessage::Assistant { .. }))
    {
        tool_calls.push(ToolCall {
            id: id.clone(),
            kind: "function".into(),
            function: FunctionCall {
                name: tools::check::NAME.into(),
                arguments: "{}".into(),
            },
        });
    }
    messages.push(ChatMessage::Tool {
        tool_call_id: id,
        content: feedback,
    });
}

/// The request for the next turn: a bounded view of the transcript, in the run's tool mode.
fn request(
    messages: &[ChatMessage],
    mode: Mode,
    specs: &[ToolSpec],
    cfg: &AgentConfig,
    history_len: usize,
) -> ChatRequest {
    let view = context::fit(messages, cfg.context_budget_chars, 1, history_len);
    let (messages, tools) = match mode {
        Mode::Native => (view, specs.to_vec()),
        Mode::Text => {
            let mut v = textproto::render(view);
            if let Some(ChatMessage::System { content }) = v.first_mut() {
                content.push_str(&textproto::system_appendix(specs));
            }
            (v, Vec::new())
        }
    };
    ChatRequest {
        messages,
        tools,
        temperature: Some(cfg.temperature),
        max_tokens: None,
    }
}

/// Runs the calls in order, telling the sink, and appends their results to the transcript.
async fn run_calls(
    sandbox: &dyn Sandbox,
    sink: &dyn EventSink,
    calls: &[ToolCall],
    run_opts: &RunOptions,
    messages: &mut Vec<ChatMessage>,
    tally: &mut Tally,
) -> Result<(), AgentError> {
    for call in calls {
        sink.emit(RunEvent::ToolCall {
            call_id: call.id.clone(),
            name: call.function.name.clone(),
            summary: tools::summarize(&call.function.name, &call.function.arguments),
        })
        .await;
        let (tx, rx) = mpsc::channel::<String>(32);
        let exec = tools::execute(
            sandbox,
            &call.function.name,
            &call.function.arguments,
            run_opts,
            Some(tx),
        );
        let (result, ()) = tokio::join!(exec, forward_progress(sink, &call.id, rx));
        let result = result?;
        for path in &result.written {
            sink.emit(RunEvent::FileWritten { path: path.clone() })
                .await;
            if !tally.written.contains(path) {
                tally.written.push(path.clone());
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
    Ok(())
}

/// Sends a command's output as it comes, in pieces, at most [`PROGRESS_BYTES`] per command.
async fn forward_progress(sink: &dyn EventSink, call_id: &str, mut rx: mpsc::Receiver<String>) {
    let mut sent = 0usize;
    let mut buf = String::new();
    let mut last = Instant::now();
    loop {
        let next = tokio::time::timeout(PROGRESS_EVERY, rx.recv()).await;
        let closed = matches!(next, Ok(None));
        if let Ok(Some(chunk)) = next
            && sent < PROGRESS_BYTES
        {
            let room = PROGRESS_BYTES.saturating_sub(sent + buf.len());
            let mut end = chunk.len().min(room);
            while !chunk.is_char_boundary(end) {
                end -= 1;
            }
            buf.push_str(&chunk[..end]);
        }
        let due = buf.len() >= PROGRESS_CHUNK || last.elapsed() >= PROGRESS_EVERY || closed;
        if due && !buf.is_empty() {
            sent += buf.len();
            sink.emit(RunEvent::ToolProgress {
                call_id: call_id.to_owned(),
                text: std::mem::take(&mut buf),
            })
            .await;
            last = Instant::now();
        }
        if closed {
            return;
        }
    }
}
