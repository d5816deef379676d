//! Checks of message content, shared by DATA (after dot-unstuffing) and BDAT: text
//! lines at most 1000 octets with CRLF, no bare CR or LF, no NUL. In normalize mode a
//! bare CR or LF becomes CRLF; in refuse mode it is recorded as a fault and the
//! session refuses the message when it ends. Either way, nothing with a bare line
//! ending is ever written out.

use crate::MAX_TEXT_LINE;

/// How bare CR and bare LF are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineEndings {
    Refuse,
    Normalize,
}

/// The first thing wrong with a message's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ContentFault {
    #[error("a text line is longer than 1000 octets")]
    LineTooLong,
    #[error("bare LF in message content")]
    BareLf,
    #[error("bare CR in message content")]
    BareCr,
    #[error("NUL in message content")]
    Nul,
}

/// Streams content through the checks.
#[derive(Debug, Clone)]
pub struct ContentChecker {
    mode: LineEndings,
    /// A CR was seen and its LF not yet.
    pending_cr: bool,
    /// Octets in the current line so far, without the line ending.
    line_len: usize,
    fault: Option<ContentFault>,
    eight_bit: bool,
    /// Octets written to the output so far.
    written: u64,
}

impl ContentChecker {
    pub fn new(mode: LineEndings) -> Self {
        Self {
            mode,
            pending_cr: false,
            line_len: 0,
            fault: None,
            eight_bit: false,
            written: 0,
        }
    }

    /// The first fault seen, if any.
    pub fn fault(&self) -> Option<ContentFault> {
        self.fault
    }

    /// Whether any octet above 127 was seen (the message needs 8BITMIME downstream).
    pub fn eight_bit(&self) -> bool {
        self.eight_bit
    }

    /// Octets of checked content written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    fn note(&mut self, f: ContentFault) {
        self.fault.get_or_insert(f);
    }

    fn end_line(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"\r\n");
        self.written += 2;
        self.line_len = 0;
    }

    /// A bare CR or LF: a line end in normalize mode, a fault in refuse mode (the
    /// message will be refused, so what is written no longer matters; it is still
    /// written as CRLF so no bare line ending is ever stored).
    fn bare(&mut self, fault: ContentFault, out: &mut Vec<u8>) {
        if self.mode == LineEndings::Refuse {
            self.note(fault);
        }
        self.end_line(out);
    }

    /// Checks `input` and appends the (possibly normalized) content to `out`.
    pub fn ingest(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let mut i = 0;
        while i < input.len() {
            if self.pending_cr {
                self.pending_cr = false;
                if input[i] == b'\n' {
                    self.end_line(out);
                    i += 1;
                    continue;
                }
                self.bare(ContentFault::BareCr, out);
                // This byte is looked at again below as the start of a new line.
            }
            // Copy a run of ordinary bytes in one go.
            let run = input[i..]
                .iter()
                .position(|&b| b == b'\r' || b == b'\n' || b == 0)
                .unwrap_or(input.len() - i);
            if run > 0 {
                let chunk = &input[i..i + run];
                if !self.eight_bit && chunk.iter().any(|&b| b >= 0x80) {
                    self.eight_bit = true;
                }
                self.line_len += run;
                if self.line_len > MAX_TEXT_LINE - 2 {
                    self.note(ContentFault::LineTooLong);
                }
                out.extend_from_slice(chunk);
                self.written += run as u64;
                i += run;
                continue;
            }
            match input[i] {
                b'\r' => self.pending_cr = true,
                b'\n' => self.bare(ContentFault::BareLf, out),
                _ => {
                    self.note(ContentFault::Nul);
                    // NUL is never stored; the message is refused anyway.
                }
            }
            i += 1;
        }
    }

    /// Ends the content: a trailing bare CR is a fault, and a last line without a line
    /// ending gets CRLF (BDAT content need not end with one).
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if std::mem::take(&mut self.pending_cr) {
            self.bare(ContentFault::BareCr, out);
        } else if self.line_len > 0 {
            self.end_line(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check(mode: LineEndings, input: &[u8]) -> (Vec<u8>, Option<ContentFault>) {
        let mut c = ContentChecker::new(mode);
        let mut out = Vec::new();
        c.ingest(input, &mut out);
        c.finish(&mut out);
        (out, c.fault())
    }

    #[test]
    fn clean_content_passes_unchanged() {
        let input = b"Subject: hi\r\n\r\nline\r\n";
        assert_eq!(check(LineEndings::Refuse, input), (input.to_vec(), None));
    }

    #[test]
    fn bare_line_endings_refused_or_normalized() {
        assert_eq!(
            check(LineEndings::Refuse, b"a\nb\r\n").1,
            Some(ContentFault::BareLf)
        );
        assert_eq!(
            check(LineEndings::Refuse, b"a\rb\r\n").1,
            Some(ContentFault::BareCr)
        );
        assert_eq!(
            check(LineEndings::Refuse, b"a\r").1,
            Some(ContentFault::BareCr)
        );
        assert_eq!(
            check(LineEndings::Normalize, b"a\nb\rc\r\r\nd"),
            (b"a\r\nb\r\nc\r\n\r\nd\r\n".to_vec(), None)
        );
    }

    #[test]
    fn nul_and_long_lines() {
        assert_eq!(
            check(LineEndings::Normalize, b"a\0b\r\n").1,
            Some(ContentFault::Nul)
        );
        let ok = [vec![b'x'; 998], b"\r\n".to_vec()].concat();
        assert_eq!(check(LineEndings::Refuse, &ok).1, None);
        let long = [vec![b'x'; 999], b"\r\n".to_vec()].concat();
        assert_eq!(
            check(LineEndings::Refuse, &long).1,
            Some(ContentFault::LineTooLong)
        );
    }

    #[test]
    fn eight_bit_is_noticed() {
        let mut c = ContentChecker::new(LineEndings::Refuse);
        c.ingest("grüße\r\n".as_bytes(), &mut Vec::new());
        assert!(c.eight_bit());
    }

    proptest! {
        /// Splitting the input anywhere gives the same output and fault.
        #[test]
        fn chunking_does_not_matter(input in proptest::collection::vec(prop_oneof![
            Just(b'\r'), Just(b'\n'), Just(b'.'), Just(0u8), Just(b'a'), Just(0xC3u8)], 0..300),
            split in 0usize..300, normalize: bool) {
            let mode = if normalize { LineEndings::Normalize } else { LineEndings::Refuse };
            let whole = check(mode, &input);
            let split = split.min(input.len());
            let mut c = ContentChecker::new(mode);
            let mut out = Vec::new();
            c.ingest(&input[..split], &mut out);
            c.ingest(&input[split..], &mut out);
            c.finish(&mut out);
            prop_assert_eq!(whole, (out.clone(), c.fault()));
            // Output never holds a bare CR or LF.
            for (i, &b) in out.iter().enumerate() {
                if b == b'\n' { prop_assert!(i > 0 && out[i - 1] == b'\r'); }
                if b == b'\r' { prop_assert!(out.get(i + 1) == Some(&b'\n')); }
            }
        }
    }
}
