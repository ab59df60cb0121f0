//! One model call: its text and reasoning streamed to the sink, retries told, usage reported.

use codeflux_llm::{ChatRequest, Completion, LlmClient, LlmError, LlmEvent};
use codeflux_protocol::RunEvent;

use crate::{AgentError, EventSink};

/// Asks the model once, streaming what it writes to `sink`; the whole answer at the end.
pub(crate) async fn stream_turn(
    llm: &LlmClient,
    req: &ChatRequest,
    sink: &dyn EventSink,
) -> Result<Completion, AgentError> {
    let mut stream = llm.stream(req);
    while let Some(ev) = stream.next().await {
        match ev? {
            LlmEvent::TextDelta(text) => sink.emit(RunEvent::TextDelta { text }).await,
            LlmEvent::ReasoningDelta(text) => {
                sink.emit(RunEvent::ReasoningDelta { text }).await;
            }
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
            LlmEvent::Notice(message) => sink.emit(RunEvent::Notice { message }).await,
            LlmEvent::ToolCallStarted { .. } => {}
            LlmEvent::Done(c) => {
                report_usage(llm, &c, sink).await;
                return Ok(c);
            }
        }
    }
    Err(AgentError::Llm(LlmError::protocol(
        "the model's answer ended without a result",
    )))
}

/// A whole answer without streaming its text (title, reply), its usage reported.
pub(crate) async fn complete(
    llm: &LlmClient,
    req: &ChatRequest,
    sink: &dyn EventSink,
) -> Result<Completion, LlmError> {
    let c = llm.complete(req).await?;
    report_usage(llm, &c, sink).await;
    Ok(c)
}

async fn report_usage(llm: &LlmClient, c: &Completion, sink: &dyn EventSink) {
    if let Some(u) = c.usage {
        sink.emit(RunEvent::Usage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            cost_usd: u.cost.or_else(|| llm.price(&u)),
            model: llm.endpoint().model.clone(),
        })
        .await;
    }
}
