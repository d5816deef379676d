//! Envelope addresses (RFC 5321 §4.1.2, with RFC 6531 UTF-8 where SMTPUTF8 is used).
//! Parsing is strict about structure and lengths and keeps the local part as sent:
//! a relay must not rewrite what it does not own.

use std::fmt;
use std::net::IpAddr;

/// Why an address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("address is empty")]
    Empty,
    #[error("address lacks a domain")]
    NoDomain,
    #[error("local part is not a valid dot-string or quoted string")]
    BadLocalPart,
    #[error("local part is longer than 64 octets")]
    LocalPartTooLong,
    #[error("domain is not a valid name or address literal")]
    BadDomain,
    #[error("domain is longer than 255 octets")]
    DomainTooLong,
    #[error("path is longer than 256 octets")]
    PathTooLong,
    #[error("path is not enclosed in angle brackets")]
    Brackets,
}

/// The domain of an address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Domain {
    /// A DNS name as sent (may hold UTF-8 U-labels under SMTPUTF8).
    Name(String),
    /// An address literal, `[192.0.2.1]` or `[IPv6:2001:db8::1]`.
    Literal(IpAddr),
}

impl Domain {
    /// Lower-case form for comparisons and routing.
    pub fn to_lowercase(&self) -> String {
        match self {
            Domain::Name(n) => n.to_lowercase(),
            Domain::Literal(_) => self.to_string(),
        }
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Domain::Name(n) => f.write_str(n),
            Domain::Literal(IpAddr::V4(a)) => write!(f, "[{a}]"),
            Domain::Literal(IpAddr::V6(a)) => write!(f, "[IPv6:{a}]"),
        }
    }
}

/// A mailbox: `local@domain`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Address {
    /// The local part exactly as sent (quotes included, when quoted).
    pub local: String,
    pub domain: Domain,
}

impl Address {
    /// Whether the address holds non-ASCII characters, so it needs SMTPUTF8.
    pub fn needs_smtputf8(&self) -> bool {
        !self.local.is_ascii() || !self.to_string().is_ascii()
    }

    /// Parses `local@domain` (no angle brackets).
    pub fn parse(s: &str) -> Result<Self, AddressError> {
        if s.is_empty() {
            return Err(AddressError::Empty);
        }
        let at = local_part_end(s)?;
        let (local, domain) = (&s[..at], &s[at + 1..]);
        if local.len() > 64 {
            return Err(AddressError::LocalPartTooLong);
        }
        Ok(Address {
            local: local.to_owned(),
            domain: parse_domain(domain)?,
        })
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

/// MAIL FROM's path: an address or the null sender `<>` (bounces).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReversePath {
    Null,
    Address(Address),
}

impl fmt::Display for ReversePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReversePath::Null => Ok(()),
            ReversePath::Address(a) => a.fmt(f),
        }
    }
}

/// RCPT TO's path: an address or the bare `<postmaster>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardPath {
    Postmaster,
    Address(Address),
}

impl fmt::Display for ForwardPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ForwardPath::Postmaster => f.write_str("postmaster"),
            ForwardPath::Address(a) => a.fmt(f),
        }
    }
}

/// Strips angle brackets and a source route (`<@a,@b:user@c>`, which RFC 5321 §4.1.2
/// says to accept and ignore). A path without brackets is accepted, as Postfix does by
/// default, when it is one token.
pub(crate) fn unbracket(path: &str) -> Result<&str, AddressError> {
    if path.len() > 256 {
        return Err(AddressError::PathTooLong);
    }
    let inner = match (path.strip_prefix('<'), path.ends_with('>')) {
        (Some(rest), true) => &rest[..rest.len() - 1],
        (None, false) if !path.contains(['<', '>']) => path,
        _ => return Err(AddressError::Brackets),
    };
    if inner.starts_with('@') {
        return match inner.find(':') {
            Some(colon) => Ok(&inner[colon + 1..]),
            None => Err(AddressError::BadLocalPart),
        };
    }
    Ok(inner)
}

/// Parses a reverse-path (with brackets).
pub fn parse_reverse_path(path: &str) -> Result<ReversePath, AddressError> {
    let inner = unbracket(path)?;
    if inner.is_empty() {
        return Ok(ReversePath::Null);
    }
    Address::parse(inner).map(ReversePath::Address)
}

/// Parses a forward-path (with brackets).
pub fn parse_forward_path(path: &str) -> Result<ForwardPath, AddressError> {
    let inner = unbracket(path)?;
    if inner.eq_ignore_ascii_case("postmaster") {
        return Ok(ForwardPath::Postmaster);
    }
    Address::parse(inner).map(ForwardPath::Address)
}

fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
}

/// Validates the local part and returns the index of the `@` after it.
fn local_part_end(s: &str) -> Result<usize, AddressError> {
    if let Some(rest) = s.strip_prefix('"') {
        // Quoted string: qtextSMTP or quoted-pair, then the closing quote.
        let mut escaped = false;
        for (i, c) in rest.char_indices() {
            if escaped {
                if !(' '..='~').contains(&c) {
                    return Err(AddressError::BadLocalPart);
                }
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                let end = i + 2; // opening quote + closing quote
                return match s[end..].chars().next() {
                    Some('@') => Ok(end),
                    Some(_) => Err(AddressError::BadLocalPart),
                    None => Err(AddressError::NoDomain),
                };
            } else if c.is_ascii() && !(' '..='~').contains(&c) {
                return Err(AddressError::BadLocalPart);
            }
        }
        return Err(AddressError::BadLocalPart);
    }
    let at = s.rfind('@').ok_or(AddressError::NoDomain)?;
    let local = &s[..at];
    if local.is_empty()
        || local
            .split('.')
            .any(|atom| atom.is_empty() || !atom.chars().all(is_atext))
    {
        return Err(AddressError::BadLocalPart);
    }
    Ok(at)
}

fn parse_domain(d: &str) -> Result<Domain, AddressError> {
    if d.len() > 255 {
        return Err(AddressError::DomainTooLong);
    }
    if let Some(lit) = d.strip_prefix('[') {
        let lit = lit.strip_suffix(']').ok_or(AddressError::BadDomain)?;
        let ip = match lit.get(..5) {
            Some(tag) if tag.eq_ignore_ascii_case("IPv6:") => lit[5..]
                .parse::<std::net::Ipv6Addr>()
                .map(IpAddr::V6)
                .map_err(|_| AddressError::BadDomain)?,
            _ => lit
                .parse::<std::net::Ipv4Addr>()
                .map(IpAddr::V4)
                .map_err(|_| AddressError::BadDomain)?,
        };
        return Ok(Domain::Literal(ip));
    }
    let labels_ok = !d.is_empty()
        && d.split('.').all(|label| {
            let ok_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || !c.is_ascii();
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(ok_char)
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if !labels_ok {
        return Err(AddressError::BadDomain);
    }
    Ok(Domain::Name(d.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Address {
        Address::parse(s).expect(s)
    }

    #[test]
    fn ordinary_addresses() {
        let a = addr("john.doe+tag@Example.COM");
        assert_eq!(a.local, "john.doe+tag");
        assert_eq!(a.domain, Domain::Name("Example.COM".into()));
        assert_eq!(a.domain.to_lowercase(), "example.com");
        assert!(!a.needs_smtputf8());
        assert_eq!(addr("\"john doe\"@example.com").local, "\"john doe\"");
        assert_eq!(
            addr("\"a@b\"@example.com").to_string(),
            "\"a@b\"@example.com"
        );
        assert_eq!(
            addr("x@[192.0.2.1]").domain,
            Domain::Literal("192.0.2.1".parse().unwrap())
        );
        assert_eq!(
            addr("x@[IPv6:2001:db8::1]").to_string(),
            "x@[IPv6:2001:db8::1]"
        );
    }

    #[test]
    fn utf8_addresses_need_smtputf8() {
        let a = addr("jürgen@bücher.example");
        assert!(a.needs_smtputf8());
    }

    #[test]
    fn refused_addresses() {
        for bad in [
            "",
            "nodomain",
            "@example.com",
            "a..b@example.com",
            ".a@example.com",
            "a@",
            "a@-x.example",
            "a@x..example",
            "a@[300.1.1.1]",
            "a b@example.com",
            "\"unterminated@example.com",
            "a@exa mple.com",
            "a@[IPv6:zz]",
        ] {
            assert!(Address::parse(bad).is_err(), "{bad:?} should be refused");
        }
        let long_local = format!("{}@example.com", "a".repeat(65));
        assert_eq!(
            Address::parse(&long_local),
            Err(AddressError::LocalPartTooLong)
        );
    }

    #[test]
    fn paths() {
        assert_eq!(parse_reverse_path("<>"), Ok(ReversePath::Null));
        assert_eq!(
            parse_forward_path("<Postmaster>"),
            Ok(ForwardPath::Postmaster)
        );
        assert_eq!(
            parse_forward_path("<@relay.example,@b.example:user@example.com>")
                .expect("source route")
                .to_string(),
            "user@example.com"
        );
        assert_eq!(
            parse_reverse_path("user@example.com")
                .expect("lenient")
                .to_string(),
            "user@example.com"
        );
        assert_eq!(
            parse_reverse_path("<a@b.example"),
            Err(AddressError::Brackets)
        );
        assert!(parse_forward_path(&format!("<{}@example.com>", "a".repeat(300))).is_err());
    }
}
