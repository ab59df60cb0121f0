//! A command's output, bounded: the first quarter and the last three quarters of the cap are
//! kept, the middle is counted and dropped.

/// Keeps the first and the last part of a long output.
pub(crate) struct CappedOutput {
    head: Vec<u8>,
    tail: std::collections::VecDeque<u8>,
    cap_head: usize,
    cap_tail: usize,
    omitted: usize,
}

impl CappedOutput {
    pub(crate) fn new(cap: usize) -> Self {
        let cap_head = cap / 4;
        Self {
            head: Vec::new(),
            tail: std::collections::VecDeque::new(),
            cap_head,
            cap_tail: cap - cap_head,
            omitted: 0,
        }
    }

    pub(crate) fn push(&mut self, mut bytes: &[u8]) {
        if self.head.len() < self.cap_head {
            let take = (self.cap_head - self.head.len()).min(bytes.len());
            self.head.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
        }
        if bytes.len() >= self.cap_tail {
            self.omitted += self.tail.len() + bytes.len() - self.cap_tail;
            self.tail.clear();
            self.tail.extend(&bytes[bytes.len() - self.cap_tail..]);
            return;
        }
        let over = (self.tail.len() + bytes.len()).saturating_sub(self.cap_tail);
        if over > 0 {
            self.tail.drain(..over);
            self.omitted += over;
        }
        self.tail.extend(bytes);
    }

    pub(crate) fn finish(self) -> (String, usize) {
        let mut out = String::from_utf8_lossy(&self.head).into_owned();
        if self.omitted > 0 {
            out.push_str(&format!(
                "\n[... {} bytes of output omitted ...]\n",
                self.omitted
            ));
        }
        let tail: Vec<u8> = self.tail.into_iter().collect();
        out.push_str(&String::from_utf8_lossy(&tail));
        (out, self.omitted)
    }
}

#[cfg(test)]
mod tests {
    use super::CappedOutput;

    #[test]
    fn output_keeps_head_and_tail() {
        let mut o = CappedOutput::new(40);
        o.push(b"0123456789");
        o.push(&[b'x'; 100]);
        o.push(b"THE END");
        let (s, omitted) = o.finish();
        assert!(s.starts_with("0123456789"));
        assert!(s.ends_with("THE END"));
        assert_eq!(omitted, 10 + 100 + 7 - 40);
        assert!(s.contains("bytes of output omitted"));
    }
}
