//! The DATA receiver (RFC 5321 §4.1.1.4, §4.5.2): removes dot-stuffing and finds the
//! end of data. End of data is only `<CRLF>.<CRLF>`: a dot line after a bare LF or a
//! bare CR is content, never an end, so no second message can be smuggled through a
//! server that ends data differently (the 2023 SMTP smuggling class of attacks).
//! Bare CR/LF stay in the output for [`crate::ContentChecker`] to refuse or normalize.

/// What the receiver did with one slice of input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataProgress {
    /// Input bytes used; when `done`, the bytes after this belong to the next command.
    pub consumed: usize,
    /// The end-of-data line was seen.
    pub done: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a line (after CRLF, or at the start of data).
    LineStart,
    /// Saw `.` at the start of a line.
    Dot,
    /// Saw `.` CR at the start of a line.
    DotCr,
    /// Inside a line.
    Text,
    /// Saw CR inside a line.
    Cr,
}

/// Streams DATA content out of the raw input.
#[derive(Debug, Clone)]
pub struct DotReceiver {
    state: State,
}

impl Default for DotReceiver {
    fn default() -> Self {
        Self::new()
    }
}

impl DotReceiver {
    pub fn new() -> Self {
        Self {
            state: State::LineStart,
        }
    }

    /// Appends the content found in `input` to `out`, without the stuffing dots and
    /// without the final `.CRLF`. The content keeps the CRLF that ends its last line.
    pub fn ingest(&mut self, input: &[u8], out: &mut Vec<u8>) -> DataProgress {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                State::Text => {
                    // Fast path: copy up to the next CR in one go.
                    match input[i..].iter().position(|&b| b == b'\r') {
                        Some(p) => {
                            out.extend_from_slice(&input[i..=i + p]);
                            i += p + 1;
                            self.state = State::Cr;
                        }
                        None => {
                            out.extend_from_slice(&input[i..]);
                            i = input.len();
                        }
                    }
                    continue;
                }
                State::LineStart => {
                    let b = input[i];
                    if b == b'.' {
                        self.state = State::Dot;
                    } else {
                        self.text_byte(b, out);
                    }
                }
                State::Dot => {
                    let b = input[i];
                    if b == b'\r' {
                        self.state = State::DotCr;
                    } else {
                        // A stuffing dot: dropped; the byte is ordinary content.
                        self.text_byte(b, out);
                    }
                }
                State::DotCr => {
                    let b = input[i];
                    if b == b'\n' {
                        self.state = State::LineStart;
                        return DataProgress {
                            consumed: i + 1,
                            done: true,
                        };
                    }
                    // ".\r" + something: the CR was a bare CR of a line that began with
                    // a stuffing dot. Keep the CR and look at this byte after it.
                    out.push(b'\r');
                    self.state = State::Cr;
                    self.cr_follow(b, out);
                }
                State::Cr => {
                    let b = input[i];
                    self.cr_follow(b, out);
                }
            }
            i += 1;
        }
        DataProgress {
            consumed: input.len(),
            done: false,
        }
    }

    fn text_byte(&mut self, b: u8, out: &mut Vec<u8>) {
        out.push(b);
        self.state = if b == b'\r' { State::Cr } else { State::Text };
    }

    /// The byte after a CR that is already in `out`.
    fn cr_follow(&mut self, b: u8, out: &mut Vec<u8>) {
        out.push(b);
        self.state = match b {
            b'\n' => State::LineStart,
            b'\r' => State::Cr,
            _ => State::Text,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes; returns content and the bytes after
    /// the end of data (None when data did not end).
    fn run(input: &[u8], step: usize) -> (Vec<u8>, Option<Vec<u8>>) {
        let mut r = DotReceiver::new();
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < input.len() {
            let end = (pos + step).min(input.len());
            let p = r.ingest(&input[pos..end], &mut out);
            if p.done {
                return (out, Some(input[pos + p.consumed..].to_vec()));
            }
            pos = end;
        }
        (out, None)
    }

    #[test]
    fn plain_message_and_rest() {
        for step in 1..8 {
            let (c, rest) = run(b"Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n", step);
            assert_eq!(c, b"Subject: x\r\n\r\nbody\r\n");
            assert_eq!(rest.as_deref(), Some(&b"QUIT\r\n"[..]));
        }
    }

    #[test]
    fn empty_message() {
        let (c, rest) = run(b".\r\n", 1);
        assert_eq!(c, b"");
        assert_eq!(rest.as_deref(), Some(&b""[..]));
    }

    #[test]
    fn dot_unstuffing() {
        let (c, _) = run(b"..leading\r\n...\r\n.x\r\n.\r\n", 3);
        assert_eq!(c, b".leading\r\n..\r\nx\r\n");
    }

    /// Every end-of-data variant used by SMTP smuggling scanners: none of them ends
    /// the data; only the real CRLF.CRLF that follows does.
    #[test]
    fn smuggling_variants_do_not_end_data() {
        let variants: &[&[u8]] = &[
            b"\n.\n",
            b"\n.\r\n",
            b"\r.\r",
            b"\r\n.\n",
            b"\r.\r\n",
            b"\r\n\x00.\r\n",
            b"\n.\r",
            b"\r\n.\r",
            b"\r.\n",
            b"\r\n.\r\r\n",
            b"\n\n.\n\n",
            b"\r\r\n.\r\r\n",
        ];
        for v in variants {
            let mut msg = b"Subject: one\r\n\r\nfirst".to_vec();
            msg.extend_from_slice(v);
            msg.extend_from_slice(b"MAIL FROM:<evil@example.com>\r\nRCPT TO:<x@example.com>\r\nDATA\r\nsmuggled\r\n.\r\nQUIT\r\n");
            for step in [1, 2, 3, 7, 1000] {
                let (c, rest) = run(&msg, step);
                assert_eq!(
                    rest.as_deref(),
                    Some(&b"QUIT\r\n"[..]),
                    "variant {v:?} step {step}: data must end only at the last CRLF.CRLF"
                );
                assert!(c.ends_with(b"smuggled\r\n"), "variant {v:?}");
            }
        }
    }
}
