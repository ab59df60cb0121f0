//! Input checks shared by the page (to explain a disabled button) and the server (to refuse).

use uuid::Uuid;

use crate::{AppError, MAX_PROMPT_CHARS};

/// Checks a prompt or follow-up and returns it without surrounding whitespace.
pub fn prompt(text: &str) -> Result<String, AppError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(AppError::bad_input(
            "The message is empty. Describe what you want to build.",
        ));
    }
    let chars = trimmed.chars().count();
    if chars > MAX_PROMPT_CHARS {
        return Err(AppError::bad_input(format!(
            "The message is {chars} characters long; the limit is {MAX_PROMPT_CHARS}. Shorten it and send it again."
        )));
    }
    Ok(trimmed.to_owned())
}

/// Parses an id sent by a client; `what` names it in the error ("project id").
pub fn id(what: &str, raw: &str) -> Result<Uuid, AppError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(AppError::bad_input(format!("The {what} is missing.")));
    }
    Uuid::parse_str(raw).map_err(|_| {
        AppError::bad_input(format!(
            "\"{}\" is not a valid {what}: expected a UUID such as 0192f3a4-5b6c-7d8e-9f01-23456789abcd.",
            shorten(raw, 60)
        ))
    })
}

/// The first `max` characters of `s`, with an ellipsis when something was cut.
pub fn shorten(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_owned(),
        Some((cut, _)) => format!("{}…", &s[..cut]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn prompt_is_trimmed_and_bounded() {
        assert_eq!(prompt("  hello \n").unwrap(), "hello");
        assert_eq!(prompt("").unwrap_err().kind, ErrorKind::BadInput);
        assert_eq!(prompt(" \n\t ").unwrap_err().kind, ErrorKind::BadInput);
        assert!(prompt(&"x".repeat(MAX_PROMPT_CHARS)).is_ok());
        let err = prompt(&"x".repeat(MAX_PROMPT_CHARS + 1)).unwrap_err();
        assert!(err.message.contains("50001"), "{}", err.message);
        // characters, not bytes
        assert!(prompt(&"ü".repeat(MAX_PROMPT_CHARS)).is_ok());
    }

    #[test]
    fn ids_are_checked() {
        let good = "0192f3a4-5b6c-7d8e-9f01-23456789abcd";
        assert_eq!(id("project id", good).unwrap().to_string(), good);
        let err = id("project id", "zzz").unwrap_err();
        assert_eq!(err.kind, ErrorKind::BadInput);
        assert!(err.message.contains("\"zzz\" is not a valid project id"));
        assert!(
            id("project id", " ")
                .unwrap_err()
                .message
                .contains("missing")
        );
    }

    #[test]
    fn shorten_counts_characters() {
        assert_eq!(shorten("abc", 5), "abc");
        assert_eq!(shorten("äöüß", 2), "äö…");
    }
}
