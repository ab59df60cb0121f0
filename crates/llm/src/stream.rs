//! Reading a streamed answer: server-sent events into [`LlmEvent`]s and the whole
//! [`Completion`]. Tool calls are told apart by id as well as index (Ollama sends parallel
//! calls, each whole in its own chunk, all under index 0 with different ids).

use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use crate::client::{LlmEvent, Seen, cut, describe};
use crate::wire::{Chunk, FunctionCall, ToolCall};
use crate::{Completion, LlmError, Usage};

/// Most tool calls in one answer.
const MAX_CALLS: usize = 64;

#[derive(Debug)]
struct StreamError(String);

impl std::fmt::Display for StreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Reads an event-stream answer. Ok(None): the receiver went away.
pub(crate) async fn read_stream(
    res: reqwest::Response,
    idle: Duration,
    tx: &mpsc::Sender<Result<LlmEvent, LlmError>>,
    seen: &mut Seen,
) -> Result<Option<Completion>, LlmError> {
    let bytes = res.bytes_stream();
    let events = tokio_stream::StreamExt::timeout(bytes, idle)
        .map(|item| match item {
            Ok(Ok(b)) => Ok(b),
            Ok(Err(e)) => Err(StreamError(describe(&e))),
            Err(_) => Err(StreamError(format!("no data for {} s", idle.as_secs()))),
        })
        .eventsource();
    let mut events = std::pin::pin!(events);
    let mut acc = Accumulator::default();
    let mut done = false;
    while let Some(item) = tokio::select! {
        i = events.next() => i,
        () = tx.closed() => return Ok(None),
    } {
        let ev = item.map_err(|e| match e {
            eventsource_stream::EventStreamError::Transport(StreamError(s)) => LlmError::cut(s),
            other => LlmError::protocol(other.to_string()),
        })?;
        let data = ev.data.trim();
        if data.is_empty() {
            continue;
        }
        if data == "[DONE]" {
            done = true;
            break;
        }
        let chunk: Chunk = serde_json::from_str(data)
            .map_err(|e| LlmError::protocol(format!("bad chunk ({e}): {}", cut(data, 300))))?;
        if let Some(err) = chunk
            .error
            .as_ref()
            .or_else(|| chunk.choices.iter().find_map(|c| c.error.as_ref()))
        {
            return Err(LlmError::from_error_object(err));
        }
        if chunk
            .choices
            .iter()
            .any(|c| c.finish_reason.as_deref() == Some("error"))
        {
            return Err(LlmError::from_error_object(&serde_json::json!({
                "message": "the provider ended the answer with finish_reason \"error\" and no explanation",
                "code": 502
            })));
        }
        for event in acc.apply(chunk)? {
            match &event {
                LlmEvent::TextDelta(_) => seen.text = true,
                LlmEvent::ToolCallStarted { .. } => seen.tool_call = true,
                _ => {}
            }
            if tx.send(Ok(event)).await.is_err() {
                return Ok(None);
            }
        }
    }
    if !done && acc.finish_reason.is_none() {
        return Err(LlmError::cut(
            "the stream closed before the answer was complete",
        ));
    }
    acc.finish().map(Some)
}

/// Builds the answer from chunks: text, tool calls, finish reason, usage.
#[derive(Default)]
pub(crate) struct Accumulator {
    content: String,
    calls: Vec<PartialCall>,
    pub(crate) finish_reason: Option<String>,
    usage: Option<Usage>,
}

#[derive(Default)]
struct PartialCall {
    index: usize,
    id: String,
    name: String,
    arguments: String,
}

impl Accumulator {
    pub(crate) fn apply(&mut self, chunk: Chunk) -> Result<Vec<LlmEvent>, LlmError> {
        let mut out = Vec::new();
        if let Some(u) = chunk.usage {
            self.usage = Some(u);
        }
        for choice in chunk.choices {
            if let Some(reason) = choice.finish_reason {
                self.finish_reason = Some(reason);
            }
            let Some(delta) = choice.delta else { continue };
            if let Some(text) = delta.reasoning.or(delta.reasoning_content)
                && !text.is_empty()
            {
                out.push(LlmEvent::ReasoningDelta(text));
            }
            if let Some(text) = delta.content
                && !text.is_empty()
            {
                self.content.push_str(&text);
                out.push(LlmEvent::TextDelta(text));
            }
            for (pos, tc) in delta.tool_calls.unwrap_or_default().into_iter().enumerate() {
                let index = tc.index.unwrap_or(pos);
                let slot = self.slot(index, tc.id.as_deref())?;
                let call = &mut self.calls[slot];
                if let Some(f) = tc.function {
                    if let Some(name) = f.name
                        && !name.is_empty()
                    {
                        let started = call.name.is_empty();
                        call.name.push_str(&name);
                        if started {
                            out.push(LlmEvent::ToolCallStarted {
                                index: slot,
                                name: call.name.clone(),
                            });
                        }
                    }
                    if let Some(args) = f.arguments {
                        call.arguments.push_str(&args);
                    }
                }
            }
        }
        Ok(out)
    }

    /// The call a delta belongs to: the one with its id; else the newest with its index (a
    /// delta with a new id under a used index starts a new call).
    fn slot(&mut self, index: usize, id: Option<&str>) -> Result<usize, LlmError> {
        let id = id.filter(|i| !i.is_empty());
        if let Some(id) = id
            && let Some(i) = self.calls.iter().position(|c| c.id == id)
        {
            return Ok(i);
        }
        let newest = self.calls.iter().rposition(|c| c.index == index);
        let reuse = match (newest, id) {
            (Some(i), None) => Some(i),
            // The first delta of a call may come without its id; the id follows.
            (Some(i), Some(_)) if self.calls[i].id.is_empty() => Some(i),
            _ => None,
        };
        let slot = match reuse {
            Some(i) => i,
            None => {
                if self.calls.len() >= MAX_CALLS {
                    return Err(LlmError::protocol(format!(
                        "more than {MAX_CALLS} tool calls in one answer"
                    )));
                }
                self.calls.push(PartialCall {
                    index,
                    ..PartialCall::default()
                });
                self.calls.len() - 1
            }
        };
        if let Some(id) = id
            && self.calls[slot].id.is_empty()
        {
            self.calls[slot].id = id.to_owned();
        }
        Ok(slot)
    }

    pub(crate) fn finish(self) -> Result<Completion, LlmError> {
        let mut tool_calls = Vec::new();
        for (i, c) in self.calls.into_iter().enumerate() {
            if c.name.is_empty() && c.arguments.is_empty() {
                continue;
            }
            if c.name.is_empty() {
                return Err(LlmError::protocol(format!("tool call #{i} has no name")));
            }
            tool_calls.push(ToolCall {
                id: if c.id.is_empty() {
                    format!("call_{i}")
                } else {
                    c.id
                },
                kind: "function".to_owned(),
                function: FunctionCall {
                    name: c.name,
                    arguments: c.arguments,
                },
            });
        }
        Ok(Completion {
            content: self.content,
            tool_calls,
            finish_reason: self.finish_reason,
            usage: self.usage,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[&str]) -> (Vec<LlmEvent>, Completion) {
        let mut acc = Accumulator::default();
        let mut events = Vec::new();
        for c in chunks {
            events.extend(acc.apply(serde_json::from_str(c).unwrap()).unwrap());
        }
        (events, acc.finish().unwrap())
    }

    #[test]
    fn chunks_assemble_split_tool_calls() {
        let (events, done) = run(&[
            r#"{"choices":[{"delta":{"role":"assistant","content":"Hi "}}]}"#,
            r#"{"choices":[{"delta":{"content":"there"}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"a","function":{"name":"readFiles","arguments":""}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"files\":"}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":1,"id":"b","function":{"name":"terminal","arguments":"{\"command\":\"ls\"}"}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"[\"x\"]}"}}]}}]}"#,
            r#"{"choices":[{"delta":{},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}"#,
        ]);
        assert_eq!(events[0], LlmEvent::TextDelta("Hi ".into()));
        assert!(events.contains(&LlmEvent::ToolCallStarted {
            index: 1,
            name: "terminal".into()
        }));
        assert_eq!(done.content, "Hi there");
        assert_eq!(done.tool_calls.len(), 2);
        assert_eq!(done.tool_calls[0].function.arguments, r#"{"files":["x"]}"#);
        assert_eq!(done.tool_calls[1].id, "b");
        assert_eq!(done.usage.unwrap().total_tokens, 7);
        assert_eq!(done.finish_reason.as_deref(), Some("tool_calls"));
    }

    #[test]
    fn parallel_calls_under_one_index_are_told_apart_by_id() {
        // As Ollama sends them: each call whole, in its own chunk, all with index 0.
        let (_, done) = run(&[
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"readFiles","arguments":"{\"files\":[\"a\"]}"}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"call_b","type":"function","function":{"name":"terminal","arguments":"{\"command\":\"ls\"}"}}]}}]}"#,
            r#"{"choices":[{"delta":{},"finish_reason":"tool_calls"}]}"#,
        ]);
        assert_eq!(done.tool_calls.len(), 2);
        assert_eq!(done.tool_calls[0].function.name, "readFiles");
        assert_eq!(done.tool_calls[0].function.arguments, r#"{"files":["a"]}"#);
        assert_eq!(done.tool_calls[1].id, "call_b");
        assert_eq!(done.tool_calls[1].function.arguments, r#"{"command":"ls"}"#);
    }

    #[test]
    fn reasoning_is_reported_but_not_part_of_the_answer() {
        let (events, done) = run(&[
            r#"{"choices":[{"delta":{"reasoning":"Let me think."}}]}"#,
            r#"{"choices":[{"delta":{"reasoning_content":" More."}}]}"#,
            r#"{"choices":[{"delta":{"content":"Answer"},"finish_reason":"stop"}],"usage":null}"#,
            r#"{"choices":null,"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3,"cost":0.0012}}"#,
        ]);
        assert_eq!(events[0], LlmEvent::ReasoningDelta("Let me think.".into()));
        assert_eq!(events[1], LlmEvent::ReasoningDelta(" More.".into()));
        assert_eq!(done.content, "Answer");
        assert_eq!(done.usage.unwrap().cost, Some(0.0012));
    }
}
