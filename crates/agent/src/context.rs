//! Keeps what is sent to the model bounded as a run grows.
//!
//! The full transcript stays in memory; each request gets a view of it that fits the budget:
//! 1. results of older tool calls are replaced by a one-line note (the newest few stay whole);
//! 2. long strings in older tool-call arguments (whole file contents) are shortened, keeping the
//!    arguments valid JSON;
//! 3. if that is not enough, the oldest earlier-conversation messages are dropped.
//!
//! The system prompt, the current request and the newest steps are never touched.

use codeflux_llm::ChatMessage;

/// How many of the newest tool results are always sent whole.
const KEEP_RECENT_TOOL_RESULTS: usize = 6;
/// Longest string kept in an older tool call's arguments.
const OLD_ARG_STRING_CHARS: usize = 400;

/// Characters of the whole request.
pub fn size(messages: &[ChatMessage]) -> usize {
    messages.iter().map(ChatMessage::text_len).sum()
}

/// A view of `messages` of at most about `budget` characters. `pinned` is the number of leading
/// messages never dropped (system prompt); `history` the number of earlier-conversation
/// messages after them that may be dropped, oldest first.
pub fn fit(
    messages: &[ChatMessage],
    budget: usize,
    pinned: usize,
    history: usize,
) -> Vec<ChatMessage> {
    let mut out = messages.to_vec();
    if size(&out) <= budget {
        return out;
    }
    // 1. Older tool results become a note.
    let tool_positions: Vec<usize> = out
        .iter()
        .enumerate()
        .filter(|(_, m)| matches!(m, ChatMessage::Tool { .. }))
        .map(|(i, _)| i)
        .collect();
    let old = tool_positions
        .len()
        .saturating_sub(KEEP_RECENT_TOOL_RESULTS);
    for &i in &tool_positions[..old] {
        if let ChatMessage::Tool { content, .. } = &mut out[i]
            && content.len() > 200
        {
            *content = format!(
                "[Result of an earlier step, {} characters, left out to save context. Call the tool again if you need it.]",
                content.len()
            );
        }
        if size(&out) <= budget {
            return out;
        }
    }
    // 2. Long strings in older tool calls' arguments.
    let last_assistant = out
        .iter()
        .rposition(|m| matches!(m, ChatMessage::Assistant { .. }))
        .unwrap_or(0);
    for m in out.iter_mut().take(last_assistant) {
        if let ChatMessage::Assistant { tool_calls, .. } = m {
            for call in tool_calls.iter_mut() {
                if call.function.arguments.len() > OLD_ARG_STRING_CHARS * 2 {
                    call.function.arguments = shorten_json_strings(&call.function.arguments);
                }
            }
        }
    }
    if size(&out) <= budget {
        return out;
    }
    // 3. Drop earlier conversation, oldest first.
    let mut dropped = 0;
    while dropped < history && size(&out) > budget {
        out.remove(pinned);
        dropped += 1;
    }
    out
}

/// Shortens every long string inside a JSON document, keeping it valid JSON.
fn shorten_json_strings(arguments: &str) -> String {
    fn walk(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::String(s) if s.chars().count() > OLD_ARG_STRING_CHARS => {
                let n = s.chars().count();
                let head: String = s.chars().take(OLD_ARG_STRING_CHARS / 2).collect();
                *s = format!(
                    "{head}[... {} more characters, left out to save context ...]",
                    n - OLD_ARG_STRING_CHARS / 2
                );
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(walk),
            serde_json::Value::Object(o) => o.values_mut().for_each(walk),
            _ => {}
        }
    }
    match serde_json::from_str::<serde_json::Value>(arguments) {
        Ok(mut v) => {
            walk(&mut v);
            v.to_string()
        }
        Err(_) => "{}".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use codeflux_llm::{FunctionCall, ToolCall};

    fn call(id: &str, args: String) -> ChatMessage {
        ChatMessage::Assistant {
            content: None,
            tool_calls: vec![ToolCall {
                id: id.into(),
                kind: "function".into(),
                function: FunctionCall {
                    name: "createOrUpdateFiles".into(),
                    arguments: args,
                },
            }],
        }
    }

    fn result(id: &str, n: usize) -> ChatMessage {
        ChatMessage::Tool {
            tool_call_id: id.into(),
            content: "x".repeat(n),
        }
    }

    #[test]
    fn small_requests_are_untouched() {
        let m = vec![ChatMessage::system("s"), ChatMessage::user("u")];
        assert_eq!(fit(&m, 1000, 1, 0), m);
    }

    #[test]
    fn a_long_run_stays_within_budget_and_keeps_the_newest_steps() {
        let mut m = vec![
            ChatMessage::system("sys"),
            ChatMessage::user("old question"),
            ChatMessage::assistant("old answer"),
            ChatMessage::user("task"),
        ];
        for i in 0..30 {
            let id = format!("c{i}");
            let args =
                serde_json::json!({"files": [{"path": "a.ts", "content": "y".repeat(5000)}]})
                    .to_string();
            m.push(call(&id, args));
            m.push(result(&id, 3000));
        }
        let before = size(&m);
        let view = fit(&m, 40_000, 1, 2);
        assert!(
            size(&view) <= 40_000,
            "{} > budget (was {before})",
            size(&view)
        );
        // The newest results are whole; every tool call still has its result.
        let results: Vec<&ChatMessage> = view
            .iter()
            .filter(|x| matches!(x, ChatMessage::Tool { .. }))
            .collect();
        assert_eq!(results.len(), 30);
        if let ChatMessage::Tool { content, .. } = results[29] {
            assert_eq!(content.len(), 3000);
        }
        // Shortened arguments stay valid JSON.
        for msg in &view {
            if let ChatMessage::Assistant { tool_calls, .. } = msg {
                for c in tool_calls {
                    assert!(
                        serde_json::from_str::<serde_json::Value>(&c.function.arguments).is_ok()
                    );
                }
            }
        }
        assert!(matches!(&view[0], ChatMessage::System { .. }));
    }
}
