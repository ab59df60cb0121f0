//! Reading a non-streamed answer (a `chat.completion` object): asked for when a provider
//! cannot stream tool calls, or sent by servers that ignore `stream: true`.

use crate::client::cut;
use crate::wire::ToolCall;
use crate::{Completion, LlmError};

/// The answer and its reasoning text (empty if none).
pub(crate) fn parse_whole(text: &str) -> Result<(Completion, String), LlmError> {
    let v: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| LlmError::protocol(format!("bad JSON answer ({e}): {}", cut(text, 300))))?;
    if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
        return Err(LlmError::from_error_object(err));
    }
    let msg = v
        .pointer("/choices/0/message")
        .ok_or_else(|| LlmError::protocol(format!("no choices in: {}", cut(text, 300))))?;
    let str_of = |key: &str| {
        msg.get(key)
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let content = str_of("content");
    let reasoning = match str_of("reasoning") {
        r if r.is_empty() => str_of("reasoning_content"),
        r => r,
    };
    let tool_calls: Vec<ToolCall> = match msg.get("tool_calls") {
        Some(tc) if !tc.is_null() => serde_json::from_value(tc.clone())
            .map_err(|e| LlmError::protocol(format!("bad tool_calls: {e}")))?,
        _ => Vec::new(),
    };
    let finish_reason = v
        .pointer("/choices/0/finish_reason")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned);
    if finish_reason.as_deref() == Some("error") {
        return Err(LlmError::from_error_object(&serde_json::json!({
            "message": "the provider ended the answer with finish_reason \"error\"",
            "code": 502
        })));
    }
    Ok((
        Completion {
            content,
            tool_calls,
            finish_reason,
            usage: v
                .get("usage")
                .and_then(|u| serde_json::from_value(u.clone()).ok()),
        },
        reasoning,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_answers_and_their_errors() {
        let (c, r) = parse_whole(r#"{"choices":[{"message":{"role":"assistant","content":"hi","reasoning_content":"hmm","tool_calls":[{"id":"x","type":"function","function":{"name":"terminal","arguments":"{}"}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":3,"completion_tokens":4}}"#).unwrap();
        assert_eq!((c.content.as_str(), r.as_str()), ("hi", "hmm"));
        assert_eq!(c.tool_calls[0].function.name, "terminal");
        assert_eq!(c.usage.unwrap().completion_tokens, 4);
        let e =
            parse_whole(r#"{"error":{"code":429,"message":"Rate limit exceeded"}}"#).unwrap_err();
        assert_eq!(e.kind, crate::ErrorKind::RateLimit);
        assert!(e.message.contains("Rate limit exceeded"));
    }
}
