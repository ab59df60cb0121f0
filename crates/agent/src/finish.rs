//! The end of a finished run: a title for the version and the reply shown to the person.

use codeflux_llm::{ChatMessage, ChatRequest, LlmClient};
use codeflux_protocol::CheckReport;

use crate::summary::clean_title;
use crate::{EventSink, Outcome, Tally, prompts, turn, verify};

/// Names the version and writes the reply. When the app still fails its check the reply is
/// not the model's cheerful one: it says which errors remain.
pub(crate) async fn finish(
    llm: &LlmClient,
    sink: &dyn EventSink,
    summary: String,
    checks: Option<CheckReport>,
    tally: Tally,
) -> Outcome {
    let ask = |system: &'static str| ChatRequest {
        messages: vec![
            ChatMessage::system(system),
            ChatMessage::user(summary.clone()),
        ],
        tools: Vec::new(),
        temperature: Some(0.3),
        max_tokens: Some(120),
    };
    let mut usage = tally.usage;
    let mut requests = tally.requests;
    // Naming and the reply are niceties: if they fail, the run still succeeds.
    requests += 1;
    let title = match turn::complete(llm, &ask(prompts::TITLE_PROMPT), sink).await {
        Ok(c) => {
            usage += c.usage.unwrap_or_default();
            clean_title(&c.content, &summary)
        }
        Err(e) => {
            tracing::warn!(error = %e.detail, "title call failed");
            clean_title("", &summary)
        }
    };
    let reply = match &checks {
        Some(report) if !report.passed() => verify::failed_reply(&summary, report),
        _ => {
            requests += 1;
            match turn::complete(llm, &ask(prompts::REPLY_PROMPT), sink).await {
                Ok(c) if !c.content.trim().is_empty() => {
                    usage += c.usage.unwrap_or_default();
                    c.content.trim().to_owned()
                }
                Ok(c) => {
                    usage += c.usage.unwrap_or_default();
                    summary.clone()
                }
                Err(e) => {
                    tracing::warn!(error = %e.detail, "reply call failed");
                    summary.clone()
                }
            }
        }
    };
    Outcome {
        summary,
        title,
        reply,
        iterations: tally.iterations,
        files_written: tally.written,
        usage,
        chars_sent: tally.chars_sent,
        requests,
        checks,
    }
}
