//! The smarthost login file: the first line that is neither empty nor a comment is
//! `username:password` (split at the first `:`, so the password may hold `:`).
//! Surrounding white space is ignored.

use std::fmt;

/// What is wrong with a smarthost login file, or with a login built in code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SmarthostLoginError {
    #[error("no username:password line")]
    Missing,
    #[error("line {line}: expected username:password")]
    Shape { line: usize },
    #[error("the username holds ':' or a line break, starts with '#' or white space")]
    Username,
    #[error("the password holds a line break or ends in white space")]
    Password,
}

/// A username and password for AUTH at the smarthost.
#[derive(Clone, PartialEq, Eq)]
pub struct SmarthostLogin {
    username: String,
    password: String,
}

impl SmarthostLogin {
    /// A login that renders to a file [`SmarthostLogin::parse`] reads back unchanged.
    pub fn new(
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Result<Self, SmarthostLoginError> {
        let (username, password) = (username.into(), password.into());
        if username.contains([':', '\n', '\r'])
            || username.starts_with('#')
            || username.starts_with(char::is_whitespace)
        {
            return Err(SmarthostLoginError::Username);
        }
        if password.contains(['\n', '\r']) || password.ends_with(char::is_whitespace) {
            return Err(SmarthostLoginError::Password);
        }
        // The line holds at least the ":", so it is never taken for a blank one.
        Ok(Self { username, password })
    }

    /// Reads the text of a login file.
    pub fn parse(text: &str) -> Result<Self, SmarthostLoginError> {
        let (i, line) = text
            .lines()
            .map(str::trim)
            .enumerate()
            .find(|(_, l)| !l.is_empty() && !l.starts_with('#'))
            .ok_or(SmarthostLoginError::Missing)?;
        let (username, password) = line
            .split_once(':')
            .ok_or(SmarthostLoginError::Shape { line: i + 1 })?;
        Ok(Self {
            username: username.to_owned(),
            password: password.to_owned(),
        })
    }

    /// The file's text: `username:password` and a line break.
    pub fn render(&self) -> String {
        format!("{}:{}\n", self.username, self.password)
    }

    pub fn username(&self) -> &str {
        &self.username
    }

    pub fn password(&self) -> &str {
        &self.password
    }

    /// Both parts, owned.
    pub fn into_parts(self) -> (String, String) {
        (self.username, self.password)
    }
}

impl fmt::Debug for SmarthostLogin {
    /// Never shows the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmarthostLogin")
            .field("username", &self.username)
            .field("password", &"<hidden>")
            .finish()
    }
}
