//! Human-friendly times ("3 minutes ago"), the same on the server and in the browser.

use chrono::{DateTime, Utc};

/// How long ago `then` was, seen from `now`, in words.
pub fn relative(then: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (now - then).num_seconds();
    if secs < 0 {
        return "just now".to_owned();
    }
    let (n, unit) = match secs {
        0..45 => return "just now".to_owned(),
        45..5_400 => ((secs + 30) / 60, "minute"),
        5_400..129_600 => ((secs + 1_800) / 3_600, "hour"),
        129_600..3_888_000 => ((secs + 43_200) / 86_400, "day"),
        3_888_000..47_304_000 => ((secs + 1_296_000) / 2_592_000, "month"),
        _ => ((secs + 15_768_000) / 31_536_000, "year"),
    };
    let n = n.max(1);
    if n == 1 {
        format!("1 {unit} ago")
    } else {
        format!("{n} {unit}s ago")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn words_for_common_spans() {
        let now = Utc::now();
        let ago = |d: Duration| relative(now - d, now);
        assert_eq!(ago(Duration::seconds(3)), "just now");
        assert_eq!(ago(Duration::seconds(-30)), "just now");
        assert_eq!(ago(Duration::seconds(50)), "1 minute ago");
        assert_eq!(ago(Duration::minutes(12)), "12 minutes ago");
        assert_eq!(ago(Duration::minutes(100)), "2 hours ago");
        assert_eq!(ago(Duration::hours(40)), "2 days ago");
        assert_eq!(ago(Duration::days(70)), "2 months ago");
        assert_eq!(ago(Duration::days(800)), "2 years ago");
    }
}
