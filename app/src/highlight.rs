//! Syntax highlighting on the server (syntect, pure-Rust regex engine): HTML spans with `hl-`
//! classes, coloured by the light and dark themes in style/main.css.

use std::sync::OnceLock;

use syntect::html::{ClassStyle, ClassedHTMLGenerator};
use syntect::parsing::SyntaxSet;
use syntect::util::LinesWithEndings;

fn syntaxes() -> &'static SyntaxSet {
    static SET: OnceLock<SyntaxSet> = OnceLock::new();
    SET.get_or_init(SyntaxSet::load_defaults_newlines)
}

/// Files larger than this are shown without colours.
const MAX_HIGHLIGHT_BYTES: usize = 200_000;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The file's lines as highlighted HTML.
pub fn to_html_lines(path: &str, content: &str) -> Vec<String> {
    let set = syntaxes();
    let ext = path.rsplit('.').next().unwrap_or_default();
    // TypeScript and JSX are not in the bundled grammars; JavaScript's colours fit them well.
    let ext = match ext {
        "ts" | "tsx" | "jsx" | "mjs" | "cjs" | "mts" => "js",
        "json" | "jsonc" => "json",
        other => other,
    };
    let syntax = set
        .find_syntax_by_extension(ext)
        .unwrap_or_else(|| set.find_syntax_plain_text());
    if content.len() > MAX_HIGHLIGHT_BYTES || syntax.name == "Plain Text" {
        return content.lines().map(escape).collect();
    }
    let mut generator = ClassedHTMLGenerator::new_with_class_style(
        syntax,
        set,
        ClassStyle::SpacedPrefixed { prefix: "hl-" },
    );
    for line in LinesWithEndings::from(content) {
        if generator
            .parse_html_for_line_which_includes_newline(line)
            .is_err()
        {
            return content.lines().map(escape).collect();
        }
    }
    let html = generator.finalize();
    // Spans may cross lines; split on newlines and re-balance open spans per line.
    let mut out = Vec::new();
    let mut open: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut rest = html.as_str();
    while !rest.is_empty() {
        if let Some(stripped) = rest.strip_prefix("<span") {
            let end = stripped.find('>').map_or(stripped.len(), |i| i + 1);
            let tag = format!("<span{}", &stripped[..end]);
            current.push_str(&tag);
            open.push(tag);
            rest = &stripped[end..];
        } else if let Some(stripped) = rest.strip_prefix("</span>") {
            current.push_str("</span>");
            open.pop();
            rest = stripped;
        } else if let Some(stripped) = rest.strip_prefix('\n') {
            for _ in &open {
                current.push_str("</span>");
            }
            out.push(std::mem::take(&mut current));
            for tag in &open {
                current.push_str(tag);
            }
            rest = stripped;
        } else {
            let next = rest.find(['<', '\n']).unwrap_or(rest.len()).max(1);
            let (chunk, tail) = rest.split_at(next.min(rest.len()));
            current.push_str(chunk);
            rest = tail;
        }
    }
    if !current.is_empty() {
        for _ in &open {
            current.push_str("</span>");
        }
        out.push(current);
    }
    // A final newline opens no further line.
    out.truncate(content.lines().count());
    out
}

/// A Markdown code block's lines as highlighted HTML; `lang` is its fence's language tag.
pub fn code_block_lines(lang: &str, content: &str) -> Vec<String> {
    let ext = match lang.to_ascii_lowercase().as_str() {
        "typescript" | "ts" | "tsx" | "javascript" | "js" | "jsx" | "mjs" => "js".to_owned(),
        "bash" | "sh" | "shell" | "zsh" | "console" | "shellsession" => "sh".to_owned(),
        "python" | "py" => "py".to_owned(),
        "rust" | "rs" => "rs".to_owned(),
        "yaml" | "yml" => "yaml".to_owned(),
        "markdown" | "md" => "md".to_owned(),
        other => other
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(12)
            .collect(),
    };
    to_html_lines(&format!("block.{ext}"), content)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_is_highlighted_line_by_line_and_escaped() {
        let lines = to_html_lines(
            "src/App.tsx",
            "// a comment\nconst s = \"<b>\";\n/* multi\nline */\n",
        );
        assert_eq!(lines.len(), 4);
        assert!(lines[0].contains("hl-comment"), "{}", lines[0]);
        assert!(lines[1].contains("&lt;b&gt;") && !lines[1].contains("<b>"));
        assert!(
            lines[2].contains("hl-comment") && lines[3].contains("hl-comment"),
            "spans re-opened across lines"
        );
        let plain = to_html_lines("notes.unknownext", "a <tag>\nb");
        assert_eq!(plain, vec!["a &lt;tag&gt;", "b"]);
    }
}
