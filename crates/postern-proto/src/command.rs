//! SMTP command parser. Takes one line (without CRLF) and returns a typed command or a
//! typed error; [`CommandError::reply`] says precisely what was wrong, with an enhanced
//! status code.

use crate::address::{
    AddressError, ForwardPath, ReversePath, parse_forward_path, parse_reverse_path,
};
use crate::reply::{EnhancedCode, Reply};

/// BODY= parameter of MAIL (RFC 6152, RFC 3030).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyType {
    SevenBit,
    EightBitMime,
    BinaryMime,
}

/// Parameters of MAIL FROM.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailParams {
    /// SIZE= as declared by the client (RFC 1870).
    pub size: Option<u64>,
    /// BODY= (RFC 6152).
    pub body: Option<BodyType>,
    /// SMTPUTF8 (RFC 6531).
    pub smtputf8: bool,
    /// AUTH= (RFC 4954 §5): accepted and not trusted.
    pub auth: Option<String>,
}

/// Parameters of RCPT TO. None are supported yet; any parameter is refused with 555.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RcptParams {}

/// One parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Ehlo(String),
    Helo(String),
    Mail {
        from: ReversePath,
        params: MailParams,
    },
    Rcpt {
        to: ForwardPath,
        params: RcptParams,
    },
    Data,
    Bdat {
        size: u64,
        last: bool,
    },
    Rset,
    Noop,
    Quit,
    Vrfy(String),
    Expn(String),
    Help,
    StartTls,
    Auth {
        mechanism: String,
        initial: Option<String>,
    },
}

impl Command {
    /// The verb, for logs and metrics.
    pub fn verb(&self) -> &'static str {
        match self {
            Command::Ehlo(_) => "EHLO",
            Command::Helo(_) => "HELO",
            Command::Mail { .. } => "MAIL",
            Command::Rcpt { .. } => "RCPT",
            Command::Data => "DATA",
            Command::Bdat { .. } => "BDAT",
            Command::Rset => "RSET",
            Command::Noop => "NOOP",
            Command::Quit => "QUIT",
            Command::Vrfy(_) => "VRFY",
            Command::Expn(_) => "EXPN",
            Command::Help => "HELP",
            Command::StartTls => "STARTTLS",
            Command::Auth { .. } => "AUTH",
        }
    }
}

/// Why a command line was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("command not recognized")]
    Unrecognized,
    #[error("{verb}: {what}")]
    Syntax {
        verb: &'static str,
        what: &'static str,
    },
    #[error("bad sender address: {0}")]
    BadSender(AddressError),
    #[error("bad recipient address: {0}")]
    BadRecipient(AddressError),
    #[error("{verb} parameter {param} is not supported")]
    UnsupportedParam { verb: &'static str, param: String },
    #[error("command line is not valid UTF-8")]
    NotUtf8,
}

impl CommandError {
    /// The reply that tells the client what was wrong.
    pub fn reply(&self) -> Reply {
        match self {
            CommandError::Unrecognized => {
                Reply::new(500, EnhancedCode(5, 5, 2), "Error: command not recognized")
            }
            CommandError::Syntax { verb, what } => Reply::new(
                501,
                EnhancedCode(5, 5, 4),
                format!("Syntax error in {verb}: {what}"),
            ),
            CommandError::BadSender(e) => Reply::new(
                501,
                EnhancedCode(5, 1, 7),
                format!("Bad sender address syntax: {e}"),
            ),
            CommandError::BadRecipient(e) => Reply::new(
                501,
                EnhancedCode(5, 1, 3),
                format!("Bad recipient address syntax: {e}"),
            ),
            CommandError::UnsupportedParam { verb, param } => Reply::new(
                555,
                EnhancedCode(5, 5, 4),
                format!("{verb} parameter {param} is not supported"),
            ),
            CommandError::NotUtf8 => Reply::new(
                500,
                EnhancedCode(5, 5, 2),
                "Error: command line is not valid UTF-8",
            ),
        }
    }
}

impl Command {
    /// Parses one command line without its CRLF.
    pub fn parse(line: &[u8]) -> Result<Command, CommandError> {
        let line = std::str::from_utf8(line).map_err(|_| CommandError::NotUtf8)?;
        let (verb, rest) = match line.find(' ') {
            Some(i) => (&line[..i], line[i + 1..].trim()),
            None => (line, ""),
        };
        let verb_is = |v: &str| verb.eq_ignore_ascii_case(v);
        let no_args = |name: &'static str, cmd: Command| {
            if rest.is_empty() {
                Ok(cmd)
            } else {
                Err(CommandError::Syntax {
                    verb: name,
                    what: "this command takes no arguments",
                })
            }
        };
        if verb_is("EHLO") || verb_is("HELO") {
            let (name, ctor): (&'static str, fn(String) -> Command) = if verb_is("EHLO") {
                ("EHLO", Command::Ehlo)
            } else {
                ("HELO", Command::Helo)
            };
            let domain = rest.split(' ').next().unwrap_or_default();
            if domain.is_empty() {
                return Err(CommandError::Syntax {
                    verb: name,
                    what: "a domain name or address literal is required",
                });
            }
            return Ok(ctor(domain.to_owned()));
        }
        if verb_is("MAIL") {
            let args = strip_keyword(rest, "FROM:").ok_or(CommandError::Syntax {
                verb: "MAIL",
                what: "expected MAIL FROM:<address>",
            })?;
            let (path, params) = split_path(args);
            let from = parse_reverse_path(path).map_err(CommandError::BadSender)?;
            return Ok(Command::Mail {
                from,
                params: parse_mail_params(params)?,
            });
        }
        if verb_is("RCPT") {
            let args = strip_keyword(rest, "TO:").ok_or(CommandError::Syntax {
                verb: "RCPT",
                what: "expected RCPT TO:<address>",
            })?;
            let (path, params) = split_path(args);
            let to = parse_forward_path(path).map_err(CommandError::BadRecipient)?;
            if let Some(p) = params.split_whitespace().next() {
                return Err(CommandError::UnsupportedParam {
                    verb: "RCPT",
                    param: param_name(p),
                });
            }
            return Ok(Command::Rcpt {
                to,
                params: RcptParams {},
            });
        }
        if verb_is("BDAT") {
            let mut parts = rest.split_whitespace();
            let size = parts
                .next()
                .and_then(|s| {
                    if s.bytes().all(|b| b.is_ascii_digit()) {
                        s.parse::<u64>().ok()
                    } else {
                        None
                    }
                })
                .ok_or(CommandError::Syntax {
                    verb: "BDAT",
                    what: "expected BDAT <size> [LAST]",
                })?;
            let last = match parts.next() {
                None => false,
                Some(l) if l.eq_ignore_ascii_case("LAST") => true,
                Some(_) => {
                    return Err(CommandError::Syntax {
                        verb: "BDAT",
                        what: "expected BDAT <size> [LAST]",
                    });
                }
            };
            if parts.next().is_some() {
                return Err(CommandError::Syntax {
                    verb: "BDAT",
                    what: "expected BDAT <size> [LAST]",
                });
            }
            return Ok(Command::Bdat { size, last });
        }
        if verb_is("AUTH") {
            let mut parts = rest.split_whitespace();
            let mechanism = parts.next().ok_or(CommandError::Syntax {
                verb: "AUTH",
                what: "expected AUTH <mechanism> [initial-response]",
            })?;
            let initial = parts.next().map(str::to_owned);
            if parts.next().is_some() {
                return Err(CommandError::Syntax {
                    verb: "AUTH",
                    what: "expected AUTH <mechanism> [initial-response]",
                });
            }
            return Ok(Command::Auth {
                mechanism: mechanism.to_ascii_uppercase(),
                initial,
            });
        }
        if verb_is("VRFY") {
            return Ok(Command::Vrfy(rest.to_owned()));
        }
        if verb_is("EXPN") {
            return Ok(Command::Expn(rest.to_owned()));
        }
        if verb_is("HELP") {
            return Ok(Command::Help);
        }
        if verb_is("NOOP") {
            // RFC 5321 §4.1.1.9: NOOP may carry a string, which is ignored.
            return Ok(Command::Noop);
        }
        if verb_is("DATA") {
            return no_args("DATA", Command::Data);
        }
        if verb_is("RSET") {
            return no_args("RSET", Command::Rset);
        }
        if verb_is("QUIT") {
            return no_args("QUIT", Command::Quit);
        }
        if verb_is("STARTTLS") {
            return no_args("STARTTLS", Command::StartTls);
        }
        Err(CommandError::Unrecognized)
    }
}

/// `FROM:<x>` or `FROM: <x>` (the space is common and harmless).
fn strip_keyword<'a>(s: &'a str, keyword: &str) -> Option<&'a str> {
    let head = s.get(..keyword.len())?;
    head.eq_ignore_ascii_case(keyword)
        .then(|| s[keyword.len()..].trim_start())
}

/// Splits `<path> params` at the closing bracket (a quoted local part may hold spaces).
fn split_path(s: &str) -> (&str, &str) {
    let end = if s.starts_with('<') {
        let mut in_quotes = false;
        let mut escaped = false;
        let mut end = s.len();
        for (i, c) in s.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if in_quotes => escaped = true,
                '"' => in_quotes = !in_quotes,
                '>' if !in_quotes => {
                    end = i + 1;
                    break;
                }
                _ => {}
            }
        }
        end
    } else {
        s.find(' ').unwrap_or(s.len())
    };
    (&s[..end], s[end..].trim())
}

fn param_name(p: &str) -> String {
    p.split('=').next().unwrap_or(p).to_ascii_uppercase()
}

fn parse_mail_params(params: &str) -> Result<MailParams, CommandError> {
    let mut out = MailParams::default();
    let syntax = |what| CommandError::Syntax { verb: "MAIL", what };
    for p in params.split_whitespace() {
        let (key, value) = match p.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (p, None),
        };
        if key.eq_ignore_ascii_case("SIZE") {
            let v = value
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .ok_or(syntax("SIZE= needs a number"))?;
            out.size = Some(v.parse().unwrap_or(u64::MAX));
        } else if key.eq_ignore_ascii_case("BODY") {
            out.body = Some(match value.map(str::to_ascii_uppercase).as_deref() {
                Some("7BIT") => BodyType::SevenBit,
                Some("8BITMIME") => BodyType::EightBitMime,
                Some("BINARYMIME") => {
                    return Err(CommandError::UnsupportedParam {
                        verb: "MAIL",
                        param: "BODY=BINARYMIME".into(),
                    });
                }
                _ => return Err(syntax("BODY= must be 7BIT or 8BITMIME")),
            });
        } else if key.eq_ignore_ascii_case("SMTPUTF8") {
            if value.is_some() {
                return Err(syntax("SMTPUTF8 takes no value"));
            }
            out.smtputf8 = true;
        } else if key.eq_ignore_ascii_case("AUTH") {
            out.auth = Some(value.ok_or(syntax("AUTH= needs a value"))?.to_owned());
        } else {
            return Err(CommandError::UnsupportedParam {
                verb: "MAIL",
                param: param_name(p),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
