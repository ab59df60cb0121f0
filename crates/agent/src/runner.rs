//! The loop: ask the model, run the tools it calls, until it proposes to finish and the check
//! accepts, the step limit is reached, or it is clear the model cannot act.

use std::time::{Duration, Instant};

use codeflux_llm::{ChatMessage, ChatRequest, FunctionCall, LlmClient, ToolCall, ToolSpec};
use codeflux_protocol::{Role, RunEvent};
use codeflux_sandbox::{RunOptions, Sandbox};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::summary::extract_summary;
use crate::verify::{Verdict, verify};
use crate::{
    AgentConfig, AgentError, Checkpoints, EventSink, Outcome, Tally, Task, context, finish,
    prompts, textproto, tools, turn,
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

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
enum Mode {
    /// The provider's own tool calls.
    Native,
    /// Tool calls written as `<tool_call>` blocks in the text.
    Text,
}

/// Where a run's loop stands before a model call: the transcript so far (tool results
/// included), the tool mode and counters, the totals. Stored by [`Checkpoints`] and given back
/// to [`run_resumable`] to continue the run in another process.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Progress {
    /// The step about to be taken (1-based).
    step: usize,
    messages: Vec<ChatMessage>,
    history_len: usize,
    mode: Mode,
    native_calls: usize,
    text_calls: usize,
    idle: u32,
    cut: u32,
    fix_round: u32,
    tally: Tally,
}

impl Progress {
    /// The step about to be taken (1-based).
    pub fn step(&self) -> usize {
        self.step
    }

    /// Files the run has written so far.
    pub fn written(&self) -> &[String] {
        &self.tally.written
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
    run_resumable(llm, sandbox, sink, task, cfg, None, None).await
}

/// [`run`], continuing from `resume` when given (the sandbox holds the files of that moment),
/// and storing its state in `checkpoints` before every model call.
pub async fn run_resumable(
    llm: &LlmClient,
    sandbox: &dyn Sandbox,
    sink: &dyn EventSink,
    task: &Task,
    cfg: &AgentConfig,
    resume: Option<Progress>,
    checkpoints: Option<&dyn Checkpoints>,
) -> Result<Outcome, AgentError> {
    let mut p = match resume {
        Some(p) => p,
        None => begin(sandbox, task, cfg).await?,
    };
    let specs = tools::specs();
    let run_opts = RunOptions {
        timeout: cfg.command_timeout,
        ..RunOptions::default()
    };
    while p.step <= cfg.max_iterations {
        if let Some(c) = checkpoints {
            c.save(&p).await?;
        }
        let step = Step {
            llm,
            sandbox,
            sink,
            cfg,
            specs: &specs,
            run_opts: &run_opts,
        };
        if let Some(outcome) = step.take(&mut p).await? {
            return Ok(outcome);
        }
        p.step += 1;
    }
    Err(AgentError::IterationLimit(cfg.max_iterations))
}

/// The transcript a new run starts with: the system prompt, the recent conversation, the task.
async fn begin(
    sandbox: &dyn Sandbox,
    task: &Task,
    cfg: &AgentConfig,
) -> Result<Progress, AgentError> {
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
    Ok(Progress {
        step: 1,
        messages,
        history_len,
        mode: Mode::Native,
        native_calls: 0,
        text_calls: 0,
        idle: 0,
        cut: 0,
        fix_round: 0,
        tally: Tally::default(),
    })
}

/// What one step needs.
struct Step<'a> {
    llm: &'a LlmClient,
    sandbox: &'a dyn Sandbox,
    sink: &'a dyn EventSink,
    cfg: &'a AgentConfig,
    specs: &'a [ToolSpec],
    run_opts: &'a RunOptions,
}

impl Step<'_> {
    /// One model call and the tools it calls. `Some`: the run is finished.
    async fn take(&self, p: &mut Progress) -> Result<Option<Outcome>, AgentError> {
        let (sink, cfg) = (self.sink, self.cfg);
        p.tally.iterations = p.step;
        let req = request(&p.messages, p.mode, self.specs, cfg, p.history_len);
        p.tally.chars_sent += context::size(&req.messages);
        p.tally.requests += 1;
        let completion = turn::stream_turn(self.llm, &req, sink).await?;
        if let Some(u) = completion.usage {
            p.tally.usage += u;
        }
        let summary = extract_summary(&completion.content);
        let (text, mut calls) = self.read_calls(p, &completion).await;

        // An answer cut at the output limit: a call with incomplete arguments is never run.
        let truncated = completion.finish_reason.as_deref() == Some("length");
        let before = calls.len();
        if truncated {
            calls.retain(|c| {
                serde_json::from_str::<serde_json::Value>(&c.function.arguments).is_ok()
            });
        }
        let lost = before - calls.len();
        p.messages.push(ChatMessage::Assistant {
            content: (!text.is_empty()).then(|| text.clone()),
            tool_calls: calls.clone(),
        });
        if !calls.is_empty() {
            p.idle = 0;
            run_calls(
                self.sandbox,
                sink,
                &calls,
                self.run_opts,
                &mut p.messages,
                &mut p.tally,
            )
            .await?;
        }
        if truncated && (lost > 0 || (calls.is_empty() && summary.is_none())) {
            p.cut += 1;
            if p.cut >= CUT_LIMIT {
                return Err(AgentError::Truncated(p.cut));
            }
            sink.emit(RunEvent::Notice {
                message: "The model's answer was cut off at its output limit; asking it to go on in smaller pieces.".into(),
            })
            .await;
            p.messages.push(ChatMessage::user(prompts::CUT_PROMPT));
            return Ok(None);
        }
        p.cut = 0;
        if let Some(summary) = summary {
            match verify(self.sandbox, sink, p.fix_round, cfg.fix_rounds).await {
                Verdict::Fix(feedback) => {
                    p.fix_round += 1;
                    answer_unasked_check(&mut p.messages, p.fix_round, feedback);
                    return Ok(None);
                }
                Verdict::Accept(checks) => {
                    let tally = std::mem::take(&mut p.tally);
                    return Ok(Some(
                        finish::finish(self.llm, sink, summary, checks, tally).await,
                    ));
                }
            }
        }
        if calls.is_empty() {
            self.idle(p).await?;
        }
        Ok(None)
    }

    /// The answer's text and tool calls, native or written as text (switching to text mode
    /// when a model writes them so).
    async fn read_calls(
        &self,
        p: &mut Progress,
        completion: &codeflux_llm::Completion,
    ) -> (String, Vec<ToolCall>) {
        if p.mode == Mode::Text
            || (completion.tool_calls.is_empty() && completion.content.contains("<tool_call>"))
        {
            let (text, calls) = textproto::parse(&completion.content, p.text_calls);
            if p.mode == Mode::Native && !calls.is_empty() {
                p.mode = Mode::Text;
                self.sink
                    .emit(RunEvent::Notice {
                        message: "The model writes its tool calls as text; they are read from its answers from now on.".into(),
                    })
                    .await;
            }
            p.text_calls += calls.len();
            (text, calls)
        } else {
            p.native_calls += completion.tool_calls.len();
            (completion.content.clone(), completion.tool_calls.clone())
        }
    }

    /// An answer without a tool call: nudge the model, switch it to text mode, or give up.
    async fn idle(&self, p: &mut Progress) -> Result<(), AgentError> {
        p.idle += 1;
        if p.mode == Mode::Native && p.native_calls == 0 && p.idle >= IDLE_BEFORE_TEXT_MODE {
            p.mode = Mode::Text;
            p.idle = 0;
            self.sink
                .emit(RunEvent::Notice {
                    message: "The model answered twice without calling a tool; switching to tool calls written as text.".into(),
                })
                .await;
        } else if (p.mode == Mode::Text && p.native_calls == 0 && p.text_calls == 0 && p.idle >= 2)
            || p.idle >= IDLE_LIMIT
        {
            return Err(AgentError::NoToolUse {
                model: self.llm.endpoint().model.clone(),
                answers: p.step,
            });
        }
        p.messages.push(ChatMessage::user(match p.mode {
            Mode::Native => prompts::CONTINUE_PROMPT,
            Mode::Text => prompts::CONTINUE_TEXT_PROMPT,
        }));
        Ok(())
    }
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
