//! Dot-stuffing for sending message content with DATA (RFC 5321 §4.5.2): a line that
//! starts with `.` gets one more. Content must already hold only CRLF line endings
//! (what [`crate::ContentChecker`] guarantees for everything in the spool).

/// Stateful dot-stuffer, so content can be streamed in pieces.
#[derive(Debug, Clone)]
pub struct DotStuffer {
    at_line_start: bool,
    last_two: [u8; 2],
}

impl Default for DotStuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl DotStuffer {
    pub fn new() -> Self {
        Self {
            at_line_start: true,
            last_two: *b"\r\n",
        }
    }

    /// Appends stuffed `input` to `out`.
    pub fn ingest(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &b in input {
            if self.at_line_start && b == b'.' {
                out.push(b'.');
            }
            out.push(b);
            self.at_line_start = b == b'\n';
            self.last_two = [self.last_two[1], b];
        }
    }

    /// Appends the end-of-data sequence, with a CRLF first if the content lacked one.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.last_two != *b"\r\n" {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
        *self = Self::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DotReceiver;
    use proptest::prelude::*;

    #[test]
    fn stuffs_leading_dots() {
        let mut s = DotStuffer::new();
        let mut out = Vec::new();
        s.ingest(b".a\r\nb.\r\n..\r\n", &mut out);
        s.finish(&mut out);
        assert_eq!(out, b"..a\r\nb.\r\n...\r\n.\r\n");
    }

    proptest! {
        /// Stuffing then receiving gives back the content (CRLF-only content).
        #[test]
        fn round_trip(lines in proptest::collection::vec("[.a-z]{0,5}", 0..20)) {
            let content: Vec<u8> = lines.iter().flat_map(|l| [l.as_bytes(), b"\r\n"].concat()).collect();
            let mut wire = Vec::new();
            let mut s = DotStuffer::new();
            s.ingest(&content, &mut wire);
            s.finish(&mut wire);
            let mut r = DotReceiver::new();
            let mut back = Vec::new();
            let p = r.ingest(&wire, &mut back);
            prop_assert!(p.done);
            prop_assert_eq!(p.consumed, wire.len());
            prop_assert_eq!(back, content);
        }
    }
}
