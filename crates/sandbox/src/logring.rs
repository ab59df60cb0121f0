//! The end of a process's output, bounded in bytes (not lines): a dev server that prints one
//! endless line, or millions of short ones, never grows what the server keeps.

use std::collections::VecDeque;

/// The last `cap` bytes written.
#[derive(Debug)]
pub struct LogRing {
    buf: VecDeque<u8>,
    cap: usize,
    /// Bytes dropped from the front so far.
    dropped: u64,
}

/// Longest line shown; longer lines are cut in the middle.
const MAX_LINE_CHARS: usize = 400;

impl LogRing {
    pub fn new(cap: usize) -> Self {
        Self {
            buf: VecDeque::with_capacity(cap.min(64 * 1024)),
            cap: cap.max(1),
            dropped: 0,
        }
    }

    /// Appends bytes, dropping the oldest past the cap.
    pub fn push(&mut self, bytes: &[u8]) {
        let bytes = if bytes.len() > self.cap {
            self.dropped += (bytes.len() - self.cap) as u64;
            &bytes[bytes.len() - self.cap..]
        } else {
            bytes
        };
        let over = (self.buf.len() + bytes.len()).saturating_sub(self.cap);
        if over > 0 {
            self.buf.drain(..over);
            self.dropped += over as u64;
        }
        self.buf.extend(bytes);
    }

    /// Appends a line of the supervisor's own (a newline is added).
    pub fn note(&mut self, line: &str) {
        if self.buf.back().is_some_and(|&b| b != b'\n') {
            self.push(b"\n");
        }
        self.push(line.as_bytes());
        self.push(b"\n");
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Every byte ever pushed (kept or dropped).
    pub fn total(&self) -> u64 {
        self.dropped + self.buf.len() as u64
    }

    /// The kept output as lines (terminal escapes removed, overlong lines shortened); a first
    /// line that lost its beginning to the cap is marked.
    pub fn lines(&self) -> Vec<String> {
        let (a, b) = self.buf.as_slices();
        let mut bytes = Vec::with_capacity(a.len() + b.len());
        bytes.extend_from_slice(a);
        bytes.extend_from_slice(b);
        let text = String::from_utf8_lossy(&bytes);
        let text = strip_ansi(&text);
        let mut out: Vec<String> = text
            .split('\n')
            .map(|l| shorten(l.trim_end_matches('\r')))
            .collect();
        if out.last().is_some_and(String::is_empty) {
            out.pop();
        }
        if self.dropped > 0
            && let Some(first) = out.first_mut()
        {
            first.insert(0, '…');
        }
        out
    }

    /// The lines of what was pushed after the ring's total was `before` (as much as is kept).
    pub fn since(&self, before: u64) -> Vec<String> {
        let new = usize::try_from(self.total().saturating_sub(before)).unwrap_or(usize::MAX);
        let skip = self.buf.len().saturating_sub(new);
        let bytes: Vec<u8> = self.buf.iter().skip(skip).copied().collect();
        strip_ansi(&String::from_utf8_lossy(&bytes))
            .split('\n')
            .map(|l| shorten(l.trim_end_matches('\r')))
            .filter(|l| !l.trim().is_empty())
            .collect()
    }

    /// The last `n` lines.
    pub fn tail(&self, n: usize) -> Vec<String> {
        let lines = self.lines();
        let skip = lines.len().saturating_sub(n);
        lines.into_iter().skip(skip).collect()
    }
}

fn shorten(line: &str) -> String {
    let count = line.chars().count();
    if count <= MAX_LINE_CHARS {
        return line.to_owned();
    }
    let head: String = line.chars().take(MAX_LINE_CHARS / 2).collect();
    let tail: String = line.chars().skip(count - MAX_LINE_CHARS / 2).collect();
    format!("{head} […{} characters…] {tail}", count - MAX_LINE_CHARS)
}

/// Removes ANSI escape sequences (colours, cursor moves) that dev servers print.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::LogRing;

    #[test]
    fn an_endless_line_stays_within_the_cap() {
        let mut r = LogRing::new(1000);
        for _ in 0..10_000 {
            r.push(&[b'x'; 4096]);
        }
        assert_eq!(r.len(), 1000);
        let lines = r.lines();
        assert_eq!(lines.len(), 1);
        assert!(
            lines[0].starts_with('…') && lines[0].len() < 600,
            "{}",
            lines[0]
        );
    }

    #[test]
    fn lines_keep_the_end_and_lose_colours() {
        let mut r = LogRing::new(64);
        r.push(b"first line that will be dropped\n");
        r.push(b"\x1b[32mVITE\x1b[0m ready\r\nsecond\n");
        r.note("dev server exited");
        let tail = r.tail(3);
        assert_eq!(
            tail[1..],
            ["second".to_owned(), "dev server exited".to_owned()]
        );
        assert!(tail[0].ends_with("VITE ready"), "{tail:?}");
    }
}
