//! Answers read within a byte budget: nothing E2B or a sandbox sends can make the server hold
//! more than that.

/// The first `limit` bytes of the answer's body as text (the rest is not read).
pub(super) async fn limited_text(mut res: reqwest::Response, limit: usize) -> String {
    let mut out = Vec::new();
    while out.len() < limit {
        match res.chunk().await {
            Ok(Some(c)) => out.extend_from_slice(&c),
            _ => break,
        }
    }
    out.truncate(limit);
    String::from_utf8_lossy(&out).into_owned()
}

/// Error bodies kept.
pub(super) const ERROR_BYTES: usize = 4096;

/// What an E2B error body says: its `message` (`{"code": N, "message": "..."}`), else the
/// start of the body.
pub(super) fn said(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_else(|| body.chars().take(300).collect())
}
