//! The files the configuration points to that hold secrets, read by the gateway and
//! written by the operator: one home for their formats, and for password hashing.
//!
//! The credentials file (`auth.credentials_file`) has one user per line,
//! `name:hash:senders`: `hash` is an argon2 PHC string or a bcrypt hash, `senders` a
//! comma-separated list of addresses, `@domain` entries, or `*` for any sender. Empty
//! lines and lines starting with `#` are ignored. Errors name the line, never its
//! content, since a line may hold a password pasted by mistake.
//!
//! The smarthost login file (`delivery.smarthost.credentials_file`) is one line
//! `username:password`; see [`SmarthostLogin`].
//!
//! [`hash_password`] makes the hashes. Checking a password against a hash is the
//! gateway's business and stays there.

mod hash;
mod smarthost;

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

pub use hash::{HashAlgorithm, HashError, hash_password};
pub use smarthost::{SmarthostLogin, SmarthostLoginError};

/// What is wrong with one line of a credentials file, or with a user built in code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LineProblem {
    #[error("expected name:hash:senders")]
    Shape,
    #[error("user name is empty or holds white space")]
    Name,
    #[error("user name holds ':' or starts with '#'")]
    NameSyntax,
    #[error("hash is neither an argon2 PHC string nor bcrypt")]
    HashKind,
    #[error("argon2 hash is malformed")]
    Argon2Malformed,
    #[error("hash holds ':' or a line break")]
    HashSyntax,
    #[error("sender domain entry is malformed")]
    SenderDomain,
    #[error("a sender must be an address, @domain or *")]
    Sender,
    #[error("a sender entry holds ',', a line break or surrounding white space")]
    SenderSyntax,
    #[error("a user needs at least one allowed sender")]
    NoSenders,
    #[error("user name appears twice")]
    DuplicateName,
}

/// A credentials file that does not parse: the line (from 1) and the problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {problem}")]
pub struct ParseError {
    pub line: usize,
    pub problem: LineProblem,
}

/// What a user may put in MAIL FROM, as written in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SenderRule {
    /// Exactly this address (compared case-insensitively).
    Address(String),
    /// Any address at this domain (compared case-insensitively).
    Domain(String),
    /// Any sender at all.
    Any,
}

impl SenderRule {
    /// The rule with its address or domain in lower case, for comparing with a
    /// lower-cased sender.
    pub fn to_lowercase(&self) -> Self {
        match self {
            SenderRule::Address(a) => SenderRule::Address(a.to_lowercase()),
            SenderRule::Domain(d) => SenderRule::Domain(d.to_lowercase()),
            SenderRule::Any => SenderRule::Any,
        }
    }
}

impl FromStr for SenderRule {
    type Err = LineProblem;

    /// One entry: `*`, `@domain` or an address.
    fn from_str(s: &str) -> Result<Self, LineProblem> {
        if s.is_empty() || s != s.trim() || s.contains([',', '\n', '\r']) {
            return Err(LineProblem::SenderSyntax);
        }
        if s == "*" {
            Ok(SenderRule::Any)
        } else if let Some(d) = s.strip_prefix('@') {
            if d.is_empty() || d.contains('@') {
                return Err(LineProblem::SenderDomain);
            }
            Ok(SenderRule::Domain(d.to_owned()))
        } else if s.contains('@') {
            Ok(SenderRule::Address(s.to_owned()))
        } else {
            Err(LineProblem::Sender)
        }
    }
}

impl fmt::Display for SenderRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SenderRule::Address(a) => f.write_str(a),
            SenderRule::Domain(d) => write!(f, "@{d}"),
            SenderRule::Any => f.write_str("*"),
        }
    }
}

/// Whether `hash` looks like a bcrypt hash (`$2a$`, `$2b$`, `$2x$` or `$2y$`).
pub fn is_bcrypt(hash: &str) -> bool {
    ["$2a$", "$2b$", "$2x$", "$2y$"]
        .iter()
        .any(|p| hash.starts_with(p))
}

/// One user: name, password hash and allowed senders. Always valid: built by
/// parsing a line or by [`CredentialLine::new`], which check the same things.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialLine {
    name: String,
    hash: String,
    senders: Vec<SenderRule>,
}

impl CredentialLine {
    /// A user from its parts, checked as a line of the file would be.
    pub fn new(
        name: impl Into<String>,
        hash: impl Into<String>,
        senders: Vec<SenderRule>,
    ) -> Result<Self, LineProblem> {
        let (name, hash) = (name.into(), hash.into());
        if name.contains(':') || name.starts_with('#') {
            return Err(LineProblem::NameSyntax);
        }
        if hash.contains([':', '\n', '\r']) {
            return Err(LineProblem::HashSyntax);
        }
        for rule in &senders {
            // A rule built in code is held to what parsing would accept.
            if rule.to_string().parse::<SenderRule>().as_ref() != Ok(rule) {
                return Err(LineProblem::SenderSyntax);
            }
        }
        check_name_and_hash(&name, &hash)?;
        if senders.is_empty() {
            return Err(LineProblem::NoSenders);
        }
        Ok(Self {
            name,
            hash,
            senders,
        })
    }

    /// The user name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The password hash (argon2 PHC string or bcrypt).
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The allowed senders, as written.
    pub fn senders(&self) -> &[SenderRule] {
        &self.senders
    }
}

impl FromStr for CredentialLine {
    type Err = LineProblem;

    /// One `name:hash:senders` line (surrounding white space ignored; not a comment).
    fn from_str(line: &str) -> Result<Self, LineProblem> {
        let mut parts = line.trim().splitn(3, ':');
        let name = parts.next().unwrap_or_default();
        let hash = parts.next().ok_or(LineProblem::Shape)?;
        let senders = parts.next().ok_or(LineProblem::Shape)?;
        check_name_and_hash(name, hash)?;
        let senders = senders
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::parse)
            .collect::<Result<Vec<SenderRule>, _>>()?;
        if senders.is_empty() {
            return Err(LineProblem::NoSenders);
        }
        Ok(Self {
            name: name.to_owned(),
            hash: hash.to_owned(),
            senders,
        })
    }
}

/// The checks of name and hash every user passes, however it was built.
fn check_name_and_hash(name: &str, hash: &str) -> Result<(), LineProblem> {
    if name.is_empty() || name.chars().any(char::is_whitespace) {
        return Err(LineProblem::Name);
    }
    if !(hash.starts_with("$argon2") || is_bcrypt(hash)) {
        return Err(LineProblem::HashKind);
    }
    if hash.starts_with("$argon2") && argon2::PasswordHash::new(hash).is_err() {
        return Err(LineProblem::Argon2Malformed);
    }
    Ok(())
}

impl fmt::Display for CredentialLine {
    /// The line, without its line break.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:", self.name, self.hash)?;
        for (i, rule) in self.senders.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{rule}")?;
        }
        Ok(())
    }
}

/// One line of a credentials file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// An empty line (or one of white space only).
    Blank,
    /// A comment, the whole line as written (its first non-blank character is `#`).
    Comment(String),
    /// A user.
    User(CredentialLine),
}

/// A whole credentials file, comments and all, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CredentialsFile {
    entries: Vec<Entry>,
}

impl CredentialsFile {
    /// An empty file.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses the text of a file. The first problem found is returned with its line.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let mut file = Self::new();
        let mut names = HashSet::new();
        for (i, raw) in text.lines().enumerate() {
            let at = |problem| ParseError {
                line: i + 1,
                problem,
            };
            let line = raw.trim();
            if line.is_empty() {
                file.entries.push(Entry::Blank);
            } else if line.starts_with('#') {
                file.entries.push(Entry::Comment(raw.to_owned()));
            } else {
                let user: CredentialLine = line.parse().map_err(at)?;
                if !names.insert(user.name.clone()) {
                    return Err(at(LineProblem::DuplicateName));
                }
                file.entries.push(Entry::User(user));
            }
        }
        Ok(file)
    }

    /// The file's text: one line per entry, each ending in a line break. Users are
    /// written as `name:hash:sender,sender`; comments as they were.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for entry in &self.entries {
            match entry {
                Entry::Blank => {}
                Entry::Comment(c) => out.push_str(c),
                Entry::User(u) => out.push_str(&u.to_string()),
            }
            out.push('\n');
        }
        out
    }

    /// Adds a comment: one `# line` per line of `text`.
    pub fn push_comment(&mut self, text: &str) {
        for line in text.lines() {
            let comment = if line.is_empty() {
                "#".to_owned()
            } else {
                format!("# {line}")
            };
            self.entries.push(Entry::Comment(comment));
        }
    }

    /// Adds a user, unless one of that name is there already.
    pub fn push_user(&mut self, user: CredentialLine) -> Result<(), LineProblem> {
        if self.user(user.name()).is_some() {
            return Err(LineProblem::DuplicateName);
        }
        self.entries.push(Entry::User(user));
        Ok(())
    }

    /// Every line, in order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The users, in file order.
    pub fn users(&self) -> impl Iterator<Item = &CredentialLine> {
        self.entries.iter().filter_map(|e| match e {
            Entry::User(u) => Some(u),
            _ => None,
        })
    }

    /// The user called `name`.
    pub fn user(&self, name: &str) -> Option<&CredentialLine> {
        self.users().find(|u| u.name == name)
    }
}

#[cfg(test)]
mod tests;
