//! The client side of the wire: replies as a server sends them, read line by line
//! into the same [`Reply`] type the server side writes, and the capabilities a
//! server announces in its EHLO reply.
//!
//! Pure and synchronous like the rest of this crate: the caller reads lines (with its
//! own timeouts and length bound) and feeds them to a [`ReplyParser`].

use std::borrow::Cow;

use crate::reply::{EnhancedCode, Reply};

/// Most lines accepted in one reply.
pub const MAX_REPLY_LINES: usize = 200;

/// Why a server's reply could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("malformed reply line {0:?}")]
    Malformed(String),
    #[error("reply lines with different codes ({first} then {then})")]
    MixedCodes { first: u16, then: u16 },
    #[error("reply has more than {MAX_REPLY_LINES} lines")]
    TooManyLines,
}

/// Collects the lines of one (possibly multi-line) reply.
#[derive(Debug, Default)]
pub struct ReplyParser {
    code: u16,
    enhanced: Option<EnhancedCode>,
    lines: Vec<Cow<'static, str>>,
}

impl ReplyParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one line without its CRLF. Returns the reply once its last line
    /// (`NNN text`, not `NNN-text`) has arrived; the parser is then ready for the next.
    pub fn push(&mut self, line: &str) -> Result<Option<Reply>, ReplyError> {
        let b = line.as_bytes();
        let sep = b.get(3).copied();
        if b.len() < 3
            || !b[..3].iter().all(u8::is_ascii_digit)
            || !matches!(sep, None | Some(b' ' | b'-'))
            || !(b'2'..=b'5').contains(&b[0])
        {
            return Err(ReplyError::Malformed(line.chars().take(80).collect()));
        }
        let code: u16 = line[..3]
            .parse()
            .map_err(|_| ReplyError::Malformed(line.chars().take(80).collect()))?;
        if !self.lines.is_empty() && code != self.code {
            return Err(ReplyError::MixedCodes {
                first: self.code,
                then: code,
            });
        }
        if self.lines.len() >= MAX_REPLY_LINES {
            return Err(ReplyError::TooManyLines);
        }
        let mut text = line.get(4..).unwrap_or("");
        // RFC 2034: the enhanced code leads every line and its class matches the
        // reply's; the first line decides whether the reply carries one.
        if self.lines.is_empty() {
            self.code = code;
            self.enhanced = parse_enhanced(text).filter(|e| u16::from(e.0) == code / 100);
        }
        if let Some(e) = self.enhanced
            && let Some(rest) = strip_enhanced(text, e)
        {
            text = rest;
        }
        self.lines.push(Cow::Owned(text.to_owned()));
        if sep == Some(b'-') {
            return Ok(None);
        }
        let done = std::mem::take(self);
        Ok(Some(Reply {
            code: done.code,
            enhanced: done.enhanced,
            lines: done.lines,
        }))
    }
}

/// `4.2.1 text` → `EnhancedCode(4, 2, 1)`.
pub fn parse_enhanced(text: &str) -> Option<EnhancedCode> {
    let token = text.split(' ').next()?;
    let mut parts = token.split('.');
    let class: u8 = parts.next()?.parse().ok()?;
    let subject: u16 = parts.next()?.parse().ok()?;
    let detail: u16 = parts.next()?.parse().ok()?;
    (parts.next().is_none() && matches!(class, 2 | 4 | 5))
        .then_some(EnhancedCode(class, subject, detail))
}

/// The text after `e` and one space, when the line starts with `e`.
fn strip_enhanced(text: &str, e: EnhancedCode) -> Option<&str> {
    let token = text.split(' ').next()?;
    if parse_enhanced(token)? != e {
        return None;
    }
    Some(text[token.len()..].strip_prefix(' ').unwrap_or(""))
}

/// What a server offered in its EHLO reply (RFC 5321 §4.1.1.1 and the extensions'
/// RFCs). A server that only knows HELO offers nothing: [`Capabilities::default`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub esmtp: bool,
    pub pipelining: bool,
    /// SIZE with a positive limit; `SIZE` alone or `SIZE 0` means no stated limit.
    pub size: Option<u64>,
    pub eight_bit_mime: bool,
    pub smtputf8: bool,
    pub starttls: bool,
    pub enhanced_codes: bool,
    pub chunking: bool,
    /// AUTH mechanisms, upper case.
    pub auth: Vec<String>,
}

impl Capabilities {
    /// From a 250 EHLO reply: the first line is the server's name, each further line
    /// one keyword with its parameters.
    pub fn from_ehlo(reply: &Reply) -> Self {
        let mut c = Capabilities {
            esmtp: true,
            ..Default::default()
        };
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_whitespace();
            let Some(kw) = words.next() else { continue };
            match kw.to_ascii_uppercase().as_str() {
                "PIPELINING" => c.pipelining = true,
                "SIZE" => c.size = words.next().and_then(|s| s.parse().ok()).filter(|&s| s > 0),
                "8BITMIME" => c.eight_bit_mime = true,
                "SMTPUTF8" => c.smtputf8 = true,
                "STARTTLS" => c.starttls = true,
                "ENHANCEDSTATUSCODES" => c.enhanced_codes = true,
                "CHUNKING" => c.chunking = true,
                "AUTH" => c.auth = words.map(str::to_ascii_uppercase).collect(),
                _ => {}
            }
        }
        c
    }

    /// Whether `mechanism` (upper case) is offered.
    pub fn offers_auth(&self, mechanism: &str) -> bool {
        self.auth.iter().any(|m| m == mechanism)
    }
}

#[cfg(test)]
mod tests;
