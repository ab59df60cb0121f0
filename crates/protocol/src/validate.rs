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

/// Shortest password accepted, in characters.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest password accepted (hashing is costly; nobody types more).
pub const MAX_PASSWORD_CHARS: usize = 256;

/// Checks an email address for an account and returns it trimmed and lowercased.
pub fn email(raw: &str) -> Result<String, AppError> {
    let e = raw.trim().to_lowercase();
    let bad = |why: &str| AppError::bad_input(format!("That email address {why}."));
    if e.is_empty() {
        return Err(bad("is empty"));
    }
    if e.chars().count() > 254 {
        return Err(bad("is longer than 254 characters"));
    }
    let Some((local, domain)) = e.split_once('@') else {
        return Err(bad("has no @"));
    };
    if local.is_empty()
        || domain.is_empty()
        || domain.contains('@')
        || domain.starts_with('.')
        || domain.ends_with('.')
        || e.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(bad("is not valid (like name@example.com)"));
    }
    Ok(e)
}

/// Checks a new password's length (8 to 256 characters).
pub fn new_password(pw: &str) -> Result<(), AppError> {
    let n = pw.chars().count();
    if n < MIN_PASSWORD_CHARS {
        return Err(AppError::bad_input(format!(
            "The password is {n} characters long; use at least {MIN_PASSWORD_CHARS}."
        )));
    }
    if n > MAX_PASSWORD_CHARS {
        return Err(AppError::bad_input(format!(
            "The password is longer than {MAX_PASSWORD_CHARS} characters."
        )));
    }
    Ok(())
}

/// A name for an API token: trimmed, 1 to 60 characters.
pub fn token_name(raw: &str) -> Result<String, AppError> {
    let n = raw.trim();
    if n.is_empty() {
        return Err(AppError::bad_input(
            "Give the token a name (what it is for, like \"deploy script\").",
        ));
    }
    if n.chars().count() > 60 {
        return Err(AppError::bad_input(
            "The token's name is longer than 60 characters.",
        ));
    }
    Ok(n.to_owned())
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
    fn emails_and_passwords_are_checked() {
        assert_eq!(email("  Alice@Example.COM ").unwrap(), "alice@example.com");
        for bad in [
            "",
            "alice",
            "@x.org",
            "a@",
            "a b@x.org",
            "a@x@y",
            "a@.x",
            "a@x.",
        ] {
            assert_eq!(email(bad).unwrap_err().kind, ErrorKind::BadInput, "{bad:?}");
        }
        assert!(new_password("1234567").is_err());
        assert!(new_password("12345678").is_ok());
        assert!(new_password("ü".repeat(8).as_str()).is_ok());
        assert!(new_password(&"x".repeat(257)).is_err());
        assert_eq!(token_name("  ci  ").unwrap(), "ci");
        assert!(token_name(" ").is_err());
    }

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
