//! The provider's model list (`GET {base}/models`), read into [`ModelInfo`]s.

use codeflux_protocol::ModelInfo;

use crate::LlmError;

/// Reads an OpenAI-style list (`{"data": [{"id": ...}, ...]}`); OpenRouter adds `name`,
/// `pricing` (USD per token, as strings) and `context_length`; Ollama's is the plain shape.
pub(crate) fn parse_models(text: &str) -> Result<Vec<ModelInfo>, LlmError> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        LlmError::protocol(format!(
            "bad model list ({e}): {}",
            crate::client::cut(text, 300)
        ))
    })?;
    if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
        return Err(LlmError::from_error_object(err));
    }
    let list = v
        .get("data")
        .or_else(|| v.get("models"))
        .and_then(serde_json::Value::as_array)
        .ok_or_else(|| LlmError::protocol("the model list has no \"data\" array"))?;
    let price = |m: &serde_json::Value, key: &str| -> Option<f64> {
        let p = m.get("pricing")?.get(key)?;
        let per_token = p
            .as_f64()
            .or_else(|| p.as_str().and_then(|s| s.trim().parse::<f64>().ok()))?;
        (per_token.is_finite() && per_token >= 0.0).then_some(per_token * 1_000_000.0)
    };
    let mut out: Vec<ModelInfo> = list
        .iter()
        .filter_map(|m| {
            let id = m
                .get("id")
                .or_else(|| m.get("name"))
                .and_then(serde_json::Value::as_str)?
                .trim()
                .to_owned();
            if id.is_empty() || id.len() > 200 {
                return None;
            }
            let prompt = price(m, "prompt");
            let completion = price(m, "completion");
            let free = match (prompt, completion) {
                (Some(p), Some(c)) => Some(p == 0.0 && c == 0.0),
                _ if id.ends_with(":free") => Some(true),
                _ => None,
            };
            Some(ModelInfo {
                name: m
                    .get("name")
                    .and_then(serde_json::Value::as_str)
                    .filter(|n| *n != id)
                    .map(str::to_owned),
                free,
                prompt_usd_per_mtok: prompt,
                completion_usd_per_mtok: completion,
                context_length: m.get("context_length").and_then(serde_json::Value::as_u64),
                id,
            })
        })
        .collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out.dedup_by(|a, b| a.id == b.id);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openrouter_and_plain_lists() {
        let m = parse_models(r#"{"data":[{"id":"b/paid","name":"Paid","pricing":{"prompt":"0.000003","completion":"0.000015"},"context_length":200000},{"id":"a/free:free","pricing":{"prompt":"0","completion":"0"}}]}"#).unwrap();
        assert_eq!(m[0].id, "a/free:free");
        assert_eq!(m[0].free, Some(true));
        assert_eq!(m[1].free, Some(false));
        assert!((m[1].prompt_usd_per_mtok.unwrap() - 3.0).abs() < 1e-9);
        assert_eq!(m[1].context_length, Some(200_000));
        let m = parse_models(
            r#"{"object":"list","data":[{"id":"qwen2.5-coder:7b","object":"model"}]}"#,
        )
        .unwrap();
        assert_eq!((m[0].id.as_str(), m[0].free), ("qwen2.5-coder:7b", None));
        assert!(parse_models("<html>").is_err());
    }
}
