//! The assistant's Markdown as safe HTML, made on the server: `pulldown-cmark` parses it,
//! raw HTML in the text is shown as text (never interpreted), code blocks are highlighted by
//! syntect (escaped by construction), and `ammonia` sanitizes the result with an allowlist
//! (no scripts, no event-handler attributes, only http, https and mailto links, no images).

use std::collections::HashSet;

use pulldown_cmark::{CodeBlockKind, Event, Options, Parser, Tag, TagEnd};

/// Messages longer than this are not rendered (shown as text instead).
const MAX_MARKDOWN_BYTES: usize = 200_000;

/// The Markdown `text` as sanitized HTML.
pub fn to_html(text: &str) -> String {
    if text.len() > MAX_MARKDOWN_BYTES {
        return format!("<p>{}</p>", escape(text));
    }
    // Code blocks are highlighted apart and put back after sanitizing, in place of a marker
    // the text cannot contain (it holds a fresh random nonce).
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let mut blocks: Vec<String> = Vec::new();
    let mut code: Option<(String, String)> = None;
    let mut events: Vec<Event<'_>> = Vec::new();
    let opts = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    for ev in Parser::new_ext(text, opts) {
        match ev {
            Event::Start(Tag::CodeBlock(kind)) => {
                let lang = match kind {
                    CodeBlockKind::Fenced(l) => {
                        l.split_whitespace().next().unwrap_or("").to_owned()
                    }
                    CodeBlockKind::Indented => String::new(),
                };
                code = Some((lang, String::new()));
            }
            Event::End(TagEnd::CodeBlock) => {
                if let Some((lang, body)) = code.take() {
                    events.push(Event::Text(
                        format!("\n\ncfcode{nonce}x{}x\n\n", blocks.len()).into(),
                    ));
                    blocks.push(code_block(&lang, &body));
                }
            }
            Event::Text(t) if code.is_some() => {
                if let Some((_, body)) = code.as_mut() {
                    body.push_str(&t);
                }
            }
            // The model's own HTML is shown as the text it is.
            Event::Html(h) | Event::InlineHtml(h) => events.push(Event::Text(h)),
            // Images could load anything from anywhere: their text stays, the image does not.
            Event::Start(Tag::Image { .. }) | Event::End(TagEnd::Image) => {}
            other => events.push(other),
        }
    }
    let mut raw = String::new();
    pulldown_cmark::html::push_html(&mut raw, events.into_iter());
    let mut clean = sanitizer().clean(&raw).to_string();
    for (i, block) in blocks.iter().enumerate() {
        let marker = format!("cfcode{nonce}x{i}x");
        // The marker stands alone in a paragraph (or, in a list item, alone as text).
        let para = format!("<p>{marker}</p>");
        if clean.contains(&para) {
            clean = clean.replacen(&para, block, 1);
        } else {
            clean = clean.replacen(&marker, block, 1);
        }
    }
    clean
}

fn sanitizer() -> ammonia::Builder<'static> {
    let mut b = ammonia::Builder::default();
    b.rm_tags(["img"])
        .url_schemes(HashSet::from(["http", "https", "mailto"]))
        .link_rel(Some("noopener noreferrer nofollow"))
        .set_tag_attribute_value("a", "target", "_blank")
        .add_tag_attributes("input", ["type", "checked", "disabled"])
        .add_tags(["input"])
        .set_tag_attribute_value("input", "disabled", "");
    b
}

fn code_block(lang: &str, body: &str) -> String {
    let lines = crate::highlight::code_block_lines(lang, body);
    let label = if lang.is_empty() {
        String::new()
    } else {
        format!(
            " data-lang=\"{}\"",
            escape(
                &lang
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '+')
                    .take(20)
                    .collect::<String>()
            )
        )
    };
    format!(
        "<pre class=\"hl cf-code\"{label}><code>{}</code></pre>",
        lines.join("\n")
    )
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_renders_and_hostile_html_is_inert() {
        let md = "The page is **bold** now.\n\n```js\nconst a = \"<b>\";\n```\n\n<img src=x onerror=alert(1)> <script>alert(2)</script>\n[click](javascript:alert(3)) <a href=\"javascript:alert(4)\">raw</a> [ok](https://example.com)\n\n- item `code`\n";
        let html = to_html(md);
        assert!(html.contains("<strong>bold</strong>"), "{html}");
        assert!(
            html.contains("<pre class=\"hl cf-code\" data-lang=\"js\"><code>"),
            "{html}"
        );
        assert!(html.contains("&lt;b&gt;"), "code is escaped: {html}");
        assert!(
            !html.contains("<script") && !html.contains("<img"),
            "{html}"
        );
        // The handler survives only as escaped text, never inside a tag.
        assert!(
            html.contains("&lt;img src=x onerror=alert(1)&gt;"),
            "{html}"
        );
        // No real tag carries a handler or a javascript: URL (as text, they are harmless).
        for tag in html
            .split('<')
            .skip(1)
            .map(|t| t.split('>').next().unwrap_or(t))
        {
            let t = tag.to_lowercase();
            assert!(
                !t.contains("javascript") && !t.contains("onerror") && !t.contains("onclick"),
                "tag <{tag}> in {html}"
            );
        }
        assert!(
            html.contains("&lt;script&gt;"),
            "raw HTML is shown as text: {html}"
        );
        assert!(html.contains("href=\"https://example.com\""), "{html}");
        assert!(
            html.contains("rel=\"noopener noreferrer nofollow\""),
            "{html}"
        );
        assert!(html.contains("<li>item <code>code</code></li>"), "{html}");
    }

    #[test]
    fn the_marker_cannot_be_forged() {
        let html = to_html("cfcode00000000000000000000000000000000x0x\n\n```\nx\n```");
        assert!(
            html.contains("cfcode00000000000000000000000000000000x0x"),
            "{html}"
        );
        assert_eq!(html.matches("<pre").count(), 1);
    }
}
