//! The Connect protocol's envelopes, as envd speaks it for server-streaming calls with JSON
//! (`application/connect+json`): each message is one flag byte, a 4-byte big-endian length and
//! the JSON; flag 0x02 marks the end-of-stream message (`{}` or `{"error": {...}}`), flag 0x01
//! a compressed message (never asked for here, refused). Bounded: a frame longer than
//! [`MAX_FRAME`] is an error, so a hostile or broken peer cannot make us buffer without end.

/// The largest message accepted (envd sends output in pieces of at most 32 KiB).
pub const MAX_FRAME: usize = 4 * 1024 * 1024;

const COMPRESSED: u8 = 0x01;
const END_STREAM: u8 = 0x02;

/// One message of a stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// A response message.
    Message(serde_json::Value),
    /// The end of the stream: None when it ended well, else the error's code and message.
    End(Option<(String, String)>),
}

/// What can go wrong reading frames.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("a Connect message of {0} bytes is larger than allowed")]
    TooLarge(usize),
    #[error("a compressed Connect message (not asked for)")]
    Compressed,
    #[error("a Connect message that is not JSON: {0}")]
    NotJson(String),
}

/// The request body of a streaming call: one envelope around `message`.
pub fn envelope(message: &serde_json::Value) -> Vec<u8> {
    let json = message.to_string().into_bytes();
    let mut out = Vec::with_capacity(json.len() + 5);
    out.push(0);
    out.extend_from_slice(&u32::try_from(json.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&json);
    out
}

/// Reads frames out of the bytes of a response as they arrive.
#[derive(Default)]
pub struct Frames {
    buf: Vec<u8>,
}

impl Frames {
    /// More bytes of the response.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame, if one has arrived.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if self.buf.len() < 5 {
            return Ok(None);
        }
        let flags = self.buf[0];
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if len > MAX_FRAME {
            return Err(FrameError::TooLarge(len));
        }
        if self.buf.len() < 5 + len {
            return Ok(None);
        }
        if flags & COMPRESSED != 0 {
            return Err(FrameError::Compressed);
        }
        let body: Vec<u8> = self.buf.drain(..5 + len).skip(5).collect();
        let value: serde_json::Value = if body.is_empty() {
            serde_json::Value::Object(serde_json::Map::new())
        } else {
            serde_json::from_slice(&body).map_err(|e| FrameError::NotJson(e.to_string()))?
        };
        if flags & END_STREAM != 0 {
            let error = value.get("error").map(|e| {
                (
                    e.get("code")
                        .and_then(|c| c.as_str())
                        .unwrap_or("unknown")
                        .to_owned(),
                    e.get("message")
                        .and_then(|m| m.as_str())
                        .unwrap_or_default()
                        .to_owned(),
                )
            });
            return Ok(Some(Frame::End(error)));
        }
        Ok(Some(Frame::Message(value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn framed(flags: u8, v: &serde_json::Value) -> Vec<u8> {
        let mut e = envelope(v);
        e[0] = flags;
        e
    }

    #[test]
    fn frames_split_anywhere_are_read_whole_and_in_order() {
        let mut bytes = framed(0, &json!({"event": {"start": {"pid": 7}}}));
        bytes.extend(framed(0, &json!({"event": {"data": {"stdout": "aGk="}}})));
        bytes.extend(framed(END_STREAM, &json!({})));
        for cut in 0..bytes.len() {
            let mut f = Frames::default();
            let mut got = Vec::new();
            for part in [&bytes[..cut], &bytes[cut..]] {
                f.push(part);
                while let Some(frame) = f.next_frame().unwrap() {
                    got.push(frame);
                }
            }
            assert_eq!(got.len(), 3, "cut at {cut}");
            assert_eq!(
                got[0],
                Frame::Message(json!({"event": {"start": {"pid": 7}}}))
            );
            assert_eq!(got[2], Frame::End(None));
        }
    }

    #[test]
    fn an_error_at_the_end_and_bad_frames_are_told() {
        let mut f = Frames::default();
        f.push(&framed(
            END_STREAM,
            &json!({"error": {"code": "invalid_argument", "message": "no such dir"}}),
        ));
        assert_eq!(
            f.next_frame().unwrap(),
            Some(Frame::End(Some((
                "invalid_argument".into(),
                "no such dir".into()
            ))))
        );
        let mut f = Frames::default();
        f.push(&[0, 0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(f.next_frame(), Err(FrameError::TooLarge(_))));
        let mut f = Frames::default();
        f.push(&framed(COMPRESSED, &json!({})));
        assert_eq!(f.next_frame(), Err(FrameError::Compressed));
        let mut f = Frames::default();
        f.push(&[0, 0, 0, 0, 3, b'n', b'o', b'!']);
        assert!(matches!(f.next_frame(), Err(FrameError::NotJson(_))));
    }
}
