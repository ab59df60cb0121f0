//! Reporting the preview's runtime errors to the workspace page: pages the dev server serves
//! get a small script right after `<head>` that catches uncaught errors, unhandled rejections
//! and console errors and posts them to the window that embeds the preview, but only after
//! that window said hello (so only the page that framed the preview learns them, with its
//! origin as the target). The workspace checks the message's origin and that it comes from its
//! own preview frame. Nothing is written into the project's files.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use futures_util::StreamExt;
use hyper::body::Bytes;

/// Pages larger than this are passed through untouched.
const MAX_PAGE_BYTES: usize = 4 * 1024 * 1024;

const SCRIPT: &str = r#"<script data-codeflux="preview-errors">(function(){if(window.parent===window)return;var q=[],t=null,n=0;function send(d){if(t){try{parent.postMessage(d,t)}catch(e){}}else if(q.length<20)q.push(d)}function rep(k,m,s,l){if(n++>50)return;send({codeflux:"preview-error",kind:k,message:String(m).slice(0,500),source:String(s||"").slice(0,300),line:l||0})}addEventListener("message",function(e){if(e.source===parent&&e.data&&e.data.codeflux==="hello"){t=e.origin;var d;while((d=q.shift()))send(d)}});addEventListener("error",function(e){rep("error",e.message||"Script error",e.filename,e.lineno)});addEventListener("unhandledrejection",function(e){var r=e.reason;rep("unhandled rejection",r&&(r.stack||r.message)||r,"",0)});var ce=console.error;console.error=function(){try{rep("console error",Array.prototype.map.call(arguments,function(a){return a&&a.stack?a.stack:String(a)}).join(" "),"",0)}catch(x){}return ce.apply(console,arguments)}})();</script>"#;

/// Prepares a page request so the answer can be changed: uncompressed, never a 304.
pub fn prepare_request(headers: &mut HeaderMap) {
    headers.insert(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    headers.remove(header::IF_NONE_MATCH);
    headers.remove(header::IF_MODIFIED_SINCE);
}

/// Whether an answer is a page the script can go into.
pub fn wants(status: StatusCode, headers: &HeaderMap) -> bool {
    let html = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.to_ascii_lowercase().starts_with("text/html"));
    let plain = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|e| e.trim().eq_ignore_ascii_case("identity"));
    let small = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_none_or(|n| n <= MAX_PAGE_BYTES);
    status == StatusCode::OK && html && plain && small
}

/// The page with the script in it; a page larger than the bound passes unchanged.
pub async fn inject(headers: &mut HeaderMap, body: Body) -> Body {
    let mut stream = body.into_data_stream();
    let mut page: Vec<u8> = Vec::new();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => {
                page.extend_from_slice(&bytes);
                if page.len() > MAX_PAGE_BYTES {
                    let head = futures_util::stream::once(async move {
                        Ok::<Bytes, axum::Error>(Bytes::from(page))
                    });
                    return Body::from_stream(head.chain(stream));
                }
            }
            Err(e) => {
                tracing::debug!("reading a preview page: {e}");
                return Body::from(page);
            }
        }
    }
    let out = insert_script(&page);
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::ETAG);
    Body::from(out)
}

/// The script after `<head ...>`, else after `<html ...>`, else first.
fn insert_script(page: &[u8]) -> Vec<u8> {
    let lower = page.to_ascii_lowercase();
    let after_tag = |tag: &[u8]| -> Option<usize> {
        let start = lower
            .windows(tag.len())
            .position(|w| w == tag)
            .filter(|&i| {
                matches!(
                    lower.get(i + tag.len()),
                    Some(b'>' | b' ' | b'\t' | b'\n' | b'\r')
                )
            })?;
        lower[start..]
            .iter()
            .position(|&b| b == b'>')
            .map(|p| start + p + 1)
    };
    let at = after_tag(b"<head")
        .or_else(|| after_tag(b"<html"))
        .unwrap_or(0);
    let mut out = Vec::with_capacity(page.len() + SCRIPT.len());
    out.extend_from_slice(&page[..at]);
    out.extend_from_slice(SCRIPT.as_bytes());
    out.extend_from_slice(&page[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_goes_after_head() {
        let out = String::from_utf8(insert_script(b"<!doctype html><html lang=\"en\"><HEAD data-x=1><title>t</title></head><body></body></html>")).unwrap_or_default();
        let head = out.find("<HEAD data-x=1>").unwrap_or(usize::MAX);
        let script = out.find("<script data-codeflux").unwrap_or(0);
        assert_eq!(script, head + "<HEAD data-x=1>".len());
        let out = String::from_utf8(insert_script(b"<header>no head</header>")).unwrap_or_default();
        assert!(out.starts_with("<script data-codeflux"), "{out}");
    }

    #[test]
    fn only_plain_small_pages_are_changed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        assert!(wants(StatusCode::OK, &h));
        assert!(!wants(StatusCode::NOT_MODIFIED, &h));
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        assert!(!wants(StatusCode::OK, &h));
        let mut js = HeaderMap::new();
        js.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/javascript"),
        );
        assert!(!wants(StatusCode::OK, &js));
    }
}
