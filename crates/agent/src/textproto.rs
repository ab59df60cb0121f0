//! Tool calls written as text, for models that cannot make native tool calls: the tools are
//! described in the system prompt, the model writes
//!
//! ```text
//! <tool_call>
//! {"name": "createOrUpdateFiles", "arguments": {"files": [...]}}
//! </tool_call>
//! ```
//!
//! (the format many open models are trained on), we parse the blocks and send the results back
//! as text. The transcript stays in the native shape; [`render`] turns a request's view into
//! plain text messages.

use codeflux_llm::{ChatMessage, FunctionCall, ToolCall, ToolSpec};

const OPEN: &str = "<tool_call>";
const CLOSE: &str = "</tool_call>";

/// What the system prompt gains in text mode.
pub(crate) fn system_appendix(specs: &[ToolSpec]) -> String {
    let tools: Vec<String> = specs
        .iter()
        .map(|s| {
            format!(
                "- {}: {}\n  arguments (JSON Schema): {}",
                s.function.name, s.function.description, s.function.parameters
            )
        })
        .collect();
    format!(
        "\n\nCalling tools: this conversation has no native tool calls. To call a tool, write a block like this in your answer, one block per call (several blocks per answer are fine):\n<tool_call>\n{{\"name\": \"terminal\", \"arguments\": {{\"command\": \"ls src\"}}}}\n</tool_call>\nThe content of a block is one JSON object with \"name\" and \"arguments\". Write the blocks and then stop: the results come back in the next message. The tools:\n{}",
        tools.join("\n")
    )
}

/// The tool calls written in `text` (numbered from `first_id`), and the text without them.
pub(crate) fn parse(text: &str, first_id: usize) -> (String, Vec<ToolCall>) {
    let mut calls = Vec::new();
    let mut rest = String::new();
    let mut s = text;
    while let Some(start) = s.find(OPEN) {
        rest.push_str(&s[..start]);
        let after = &s[start + OPEN.len()..];
        let (inner, next) = match after.find(CLOSE) {
            Some(end) => (&after[..end], &after[end + CLOSE.len()..]),
            None => (after, ""),
        };
        if let Some((name, arguments)) = read_call(inner) {
            calls.push(ToolCall {
                id: format!("text_call_{}", first_id + calls.len()),
                kind: "function".into(),
                function: FunctionCall { name, arguments },
            });
        } else {
            rest.push_str(&s[start..s.len() - next.len()]);
        }
        s = next;
    }
    rest.push_str(s);
    (rest.trim().to_owned(), calls)
}

/// `{"name": ..., "arguments": {...}}` (also in a code fence, with "parameters", or with the
/// arguments as a JSON string).
fn read_call(inner: &str) -> Option<(String, String)> {
    let body = inner
        .trim()
        .trim_start_matches("```json")
        .trim_start_matches("```")
        .trim_end_matches("```")
        .trim();
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let name = v.get("name")?.as_str()?.trim().to_owned();
    if name.is_empty() {
        return None;
    }
    let args = v
        .get("arguments")
        .or_else(|| v.get("parameters"))
        .cloned()
        .unwrap_or(serde_json::json!({}));
    let arguments = match args {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    };
    Some((name, arguments))
}

/// A request's messages as plain text: tool calls as blocks, results as user messages, and
/// neighbouring user messages merged (some chat templates require roles to alternate).
pub(crate) fn render(view: Vec<ChatMessage>) -> Vec<ChatMessage> {
    let mut out: Vec<ChatMessage> = Vec::with_capacity(view.len());
    let mut names: Vec<(String, String)> = Vec::new();
    for m in view {
        let m = match m {
            ChatMessage::Assistant {
                content,
                tool_calls,
            } if !tool_calls.is_empty() => {
                let mut text = content.unwrap_or_default();
                for c in &tool_calls {
                    names.push((c.id.clone(), c.function.name.clone()));
                    let args: serde_json::Value = serde_json::from_str(&c.function.arguments)
                        .unwrap_or(serde_json::Value::String(c.function.arguments.clone()));
                    let call = serde_json::json!({"name": c.function.name, "arguments": args});
                    text.push_str(&format!("\n{OPEN}\n{call}\n{CLOSE}"));
                }
                ChatMessage::assistant(text.trim().to_owned())
            }
            ChatMessage::Tool {
                tool_call_id,
                content,
            } => {
                let name = names
                    .iter()
                    .find(|(id, _)| *id == tool_call_id)
                    .map_or("tool", |(_, n)| n.as_str());
                ChatMessage::user(format!(
                    "<tool_result name=\"{name}\">\n{content}\n</tool_result>"
                ))
            }
            other => other,
        };
        match (out.last_mut(), m) {
            (Some(ChatMessage::User { content: prev }), ChatMessage::User { content }) => {
                prev.push_str("\n\n");
                prev.push_str(&content);
            }
            (_, m) => out.push(m),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_parsed_in_their_common_shapes() {
        let text = "I will look.\n<tool_call>\n{\"name\": \"terminal\", \"arguments\": {\"command\": \"ls\"}}\n</tool_call>\n<tool_call>```json\n{\"name\":\"readFiles\",\"parameters\":{\"files\":[\"a\"]}}\n```</tool_call>\n<tool_call>{\"name\":\"editFile\",\"arguments\":\"{\\\"path\\\":\\\"x\\\"}\"}";
        let (rest, calls) = parse(text, 3);
        assert_eq!(rest, "I will look.");
        assert_eq!(calls.len(), 3);
        assert_eq!(calls[0].id, "text_call_3");
        assert_eq!(calls[0].function.arguments, r#"{"command":"ls"}"#);
        assert_eq!(calls[1].function.name, "readFiles");
        assert_eq!(calls[2].function.arguments, r#"{"path":"x"}"#);
        let (rest, calls) = parse("<tool_call>not json</tool_call> ok", 0);
        assert!(calls.is_empty());
        assert!(rest.contains("not json"));
    }

    #[test]
    fn rendering_makes_plain_alternating_text() {
        let view = vec![
            ChatMessage::system("s"),
            ChatMessage::user("u"),
            ChatMessage::Assistant {
                content: Some("doing".into()),
                tool_calls: vec![ToolCall {
                    id: "c1".into(),
                    kind: "function".into(),
                    function: FunctionCall {
                        name: "terminal".into(),
                        arguments: r#"{"command":"ls"}"#.into(),
                    },
                }],
            },
            ChatMessage::Tool {
                tool_call_id: "c1".into(),
                content: "exit code 0".into(),
            },
            ChatMessage::user("next"),
        ];
        let out = render(view);
        assert_eq!(out.len(), 4);
        let ChatMessage::Assistant {
            content,
            tool_calls,
        } = &out[2]
        else {
            panic!("assistant expected")
        };
        assert!(tool_calls.is_empty());
        assert!(
            content
                .as_deref()
                .unwrap_or_default()
                .contains("<tool_call>")
        );
        let ChatMessage::User { content } = &out[3] else {
            panic!("user expected")
        };
        assert!(content.contains("<tool_result name=\"terminal\">") && content.ends_with("next"));
    }
}
