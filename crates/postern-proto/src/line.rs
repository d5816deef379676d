//! Bounded command-line reader. Finds one line at a time in the session's input
//! buffer without ever holding more than the limit of a line that is too long: an
//! over-long line is skipped to its end and reported once, so the session can reply
//! and go on.

/// Why a line was refused. The session replies and keeps the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("line too long")]
    TooLong,
    #[error("bare LF in command line")]
    BareLf,
    #[error("bare CR in command line")]
    BareCr,
    #[error("NUL in command line")]
    Nul,
}

/// What [`LineReader::next_line`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum LineStatus<'a> {
    /// A complete line (without its line ending) and how many input bytes it used.
    Line(&'a [u8], usize),
    /// A refused line and how many input bytes it used.
    Refused(LineError, usize),
    /// No complete line yet; `consumed` bytes may be dropped (they belong to an
    /// over-long line being skipped).
    NeedMore { consumed: usize },
}

/// Splits input into CRLF-terminated lines of bounded length.
#[derive(Debug, Clone)]
pub struct LineReader {
    /// Longest line accepted, including its CRLF.
    max: usize,
    /// A bare LF ends a line (normalize) instead of refusing it.
    allow_bare_lf: bool,
    /// Inside an over-long line, skipping to its end.
    skipping: bool,
}

impl LineReader {
    pub fn new(max: usize, allow_bare_lf: bool) -> Self {
        Self {
            max,
            allow_bare_lf,
            skipping: false,
        }
    }

    /// Changes the limit (AUTH responses may be longer than commands, RFC 4954 §4).
    pub fn set_max(&mut self, max: usize) {
        self.max = max;
    }

    /// Looks for the next line at the start of `buf`.
    pub fn next_line<'a>(&mut self, buf: &'a [u8]) -> LineStatus<'a> {
        let Some(lf) = buf.iter().position(|&b| b == b'\n') else {
            if self.skipping || buf.len() >= self.max {
                self.skipping = true;
                return LineStatus::NeedMore {
                    consumed: buf.len(),
                };
            }
            return LineStatus::NeedMore { consumed: 0 };
        };
        let used = lf + 1;
        if std::mem::take(&mut self.skipping) || used > self.max {
            return LineStatus::Refused(LineError::TooLong, used);
        }
        let line = match buf[..lf].strip_suffix(b"\r") {
            Some(l) => l,
            None if self.allow_bare_lf => &buf[..lf],
            None => return LineStatus::Refused(LineError::BareLf, used),
        };
        if line.contains(&b'\r') {
            return LineStatus::Refused(LineError::BareCr, used);
        }
        if line.contains(&0) {
            return LineStatus::Refused(LineError::Nul, used);
        }
        LineStatus::Line(line, used)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_partial_lines() {
        let mut r = LineReader::new(512, false);
        assert_eq!(r.next_line(b"NOOP\r\nQU"), LineStatus::Line(b"NOOP", 6));
        assert_eq!(r.next_line(b"QU"), LineStatus::NeedMore { consumed: 0 });
    }

    #[test]
    fn bare_line_endings() {
        let mut r = LineReader::new(512, false);
        assert_eq!(
            r.next_line(b"NOOP\nX"),
            LineStatus::Refused(LineError::BareLf, 5)
        );
        assert_eq!(
            r.next_line(b"NO\rOP\r\n"),
            LineStatus::Refused(LineError::BareCr, 7)
        );
        assert_eq!(
            r.next_line(b"NO\0OP\r\n"),
            LineStatus::Refused(LineError::Nul, 7)
        );
        let mut r = LineReader::new(512, true);
        assert_eq!(r.next_line(b"NOOP\nX"), LineStatus::Line(b"NOOP", 5));
    }

    #[test]
    fn too_long_line_is_skipped_and_reported_once() {
        let mut r = LineReader::new(10, false);
        assert_eq!(
            r.next_line(b"0123456789ab"),
            LineStatus::NeedMore { consumed: 12 }
        );
        assert_eq!(r.next_line(b"more"), LineStatus::NeedMore { consumed: 4 });
        assert_eq!(
            r.next_line(b"end\r\nNOOP\r\n"),
            LineStatus::Refused(LineError::TooLong, 5)
        );
        assert_eq!(r.next_line(b"NOOP\r\n"), LineStatus::Line(b"NOOP", 6));
        // Exactly at the limit (8 + CRLF = 10) is fine; one more is not.
        assert_eq!(
            r.next_line(b"01234567\r\n"),
            LineStatus::Line(b"01234567", 10)
        );
        assert_eq!(
            r.next_line(b"012345678\r\n"),
            LineStatus::Refused(LineError::TooLong, 11)
        );
    }
}
