//! SMTP replies: a three-digit code, an optional enhanced status code (RFC 3463) and
//! text, rendered as one or more lines. Replies are data, so the session can decide
//! what to say in one place and tests can compare codes without parsing text.

use std::borrow::Cow;
use std::fmt;

/// An RFC 3463 enhanced status code, `class.subject.detail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EnhancedCode(pub u8, pub u16, pub u16);

impl fmt::Display for EnhancedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// One SMTP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit reply code.
    pub code: u16,
    /// Enhanced status code; absent only for the greeting and the EHLO/HELO reply,
    /// as RFC 2034 §3 says.
    pub enhanced: Option<EnhancedCode>,
    /// One element per line; never empty.
    pub lines: Vec<Cow<'static, str>>,
}

impl Reply {
    /// A one-line reply with an enhanced status code.
    pub fn new(code: u16, enhanced: EnhancedCode, text: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            enhanced: Some(enhanced),
            lines: vec![text.into()],
        }
    }

    /// A reply without an enhanced code (greeting, EHLO), possibly multi-line.
    pub fn plain(code: u16, lines: Vec<Cow<'static, str>>) -> Self {
        Self {
            code,
            enhanced: None,
            lines,
        }
    }

    /// 2xx: the command completed (RFC 5321 §4.2.1 "positive completion").
    pub fn is_completion(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// 3xx: the server waits for more (354 after DATA, 334 during AUTH). Never a
    /// completion: where a 2xx is required, a 3xx is a protocol error of the peer.
    pub fn is_intermediate(&self) -> bool {
        (300..400).contains(&self.code)
    }

    /// 4xx.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// 5xx.
    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }

    /// Appends the wire form (CRLF line endings) to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let last = self.lines.len().saturating_sub(1);
        for (i, line) in self.lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            let text = sanitize(line);
            let rendered = match self.enhanced {
                Some(e) => format!("{}{}{} {}\r\n", self.code, sep, e, text),
                None => format!("{}{}{}\r\n", self.code, sep, text),
            };
            out.extend_from_slice(rendered.as_bytes());
        }
    }

    /// Every line's text joined with a space (for diagnostics and logs).
    pub fn text(&self) -> String {
        self.lines.join(" ")
    }

    /// The wire form as a string (for logs and tests).
    pub fn to_wire(&self) -> String {
        let mut v = Vec::new();
        self.write_to(&mut v);
        String::from_utf8_lossy(&v).into_owned()
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.lines.join(" / ");
        match self.enhanced {
            Some(e) => write!(f, "{} {} {}", self.code, e, text),
            None => write!(f, "{} {}", self.code, text),
        }
    }
}

/// Reply text never carries CR or LF of its own: text that echoes client input could
/// otherwise inject reply lines.
fn sanitize(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b == b'\r' || b == b'\n') {
        Cow::Owned(s.replace(['\r', '\n'], " "))
    } else {
        Cow::Borrowed(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        let r = |code| Reply::plain(code, vec!["x".into()]);
        assert!(r(250).is_completion() && !r(250).is_intermediate());
        assert!(r(354).is_intermediate() && !r(354).is_completion());
        assert!(r(451).is_transient() && r(550).is_permanent());
    }

    #[test]
    fn single_and_multi_line() {
        let r = Reply::new(250, EnhancedCode(2, 1, 0), "Ok");
        assert_eq!(r.to_wire(), "250 2.1.0 Ok\r\n");
        let r = Reply::plain(250, vec!["mx greets you".into(), "PIPELINING".into()]);
        assert_eq!(r.to_wire(), "250-mx greets you\r\n250 PIPELINING\r\n");
    }

    #[test]
    fn injected_line_breaks_are_flattened() {
        let r = Reply::new(501, EnhancedCode(5, 5, 4), "bad \r\n250 ok".to_string());
        assert_eq!(r.to_wire(), "501 5.5.4 bad   250 ok\r\n");
    }
}
