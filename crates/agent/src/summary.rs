//! Reading the model's answer: its `<task_summary>` block and a short title.

/// The text of the one `<task_summary>` block, if the answer has one (the last, if several).
pub fn extract_summary(text: &str) -> Option<String> {
    let start_tag = "<task_summary>";
    let end_tag = "</task_summary>";
    let start = text.rfind(start_tag)? + start_tag.len();
    let end = text[start..]
        .find(end_tag)
        .map_or(text.len(), |e| start + e);
    let s = text[start..end].trim();
    (!s.is_empty()).then(|| s.to_owned())
}

/// A title out of what the model answered: at most three words, no quotes or punctuation.
pub fn clean_title(raw: &str, summary: &str) -> String {
    let pick = |s: &str| -> String {
        s.lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_default()
            .split_whitespace()
            .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()))
            .filter(|w| !w.is_empty() && !w.eq_ignore_ascii_case("title"))
            .take(3)
            .map(|w| {
                let mut c = w.chars();
                match c.next() {
                    Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
                    None => String::new(),
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let t = pick(raw);
    if !t.is_empty() {
        return t;
    }
    let t = pick(summary);
    if t.is_empty() {
        "Untitled".to_owned()
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_are_found() {
        assert_eq!(
            extract_summary("done <task_summary> Built it. </task_summary>").as_deref(),
            Some("Built it.")
        );
        assert_eq!(
            extract_summary("<task_summary>a</task_summary> <task_summary>b</task_summary>")
                .as_deref(),
            Some("b")
        );
        assert_eq!(
            extract_summary("<task_summary>unclosed").as_deref(),
            Some("unclosed")
        );
        assert_eq!(extract_summary("no summary"), None);
        assert_eq!(extract_summary("<task_summary> </task_summary>"), None);
    }

    #[test]
    fn titles_are_three_words_at_most() {
        assert_eq!(
            clean_title("\"habit tracker app deluxe\"", ""),
            "Habit Tracker App"
        );
        assert_eq!(clean_title("Title: Todo", ""), "Todo");
        assert_eq!(
            clean_title("", "built a counter for you"),
            "Built A Counter"
        );
        assert_eq!(clean_title("", ""), "Untitled");
    }
}
