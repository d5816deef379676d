//! EHLO and HELO (RFC 5321 §4.1.1.1): greet, reset any transaction, and list the
//! extensions this session may use now (STARTTLS only before TLS; AUTH only after).

use std::borrow::Cow;

use postern_proto::Reply;
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Flow, Greeting, Session};

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    pub(super) fn ehlo(&mut self, name: String, esmtp: bool) -> Flow {
        self.txn = None;
        self.greeting = Some(Greeting { name, esmtp });
        let host = self.gw.config.hostname.clone();
        if !esmtp {
            return self.ok(Reply::plain(250, vec![host.into()]));
        }
        let mut lines: Vec<Cow<'static, str>> = vec![
            host.into(),
            "PIPELINING".into(),
            format!("SIZE {}", self.gw.config.limits.max_message_size).into(),
            "8BITMIME".into(),
            "SMTPUTF8".into(),
            "ENHANCEDSTATUSCODES".into(),
            "CHUNKING".into(),
        ];
        if self.tls.is_none() && self.gw.tls.is_some() {
            lines.push("STARTTLS".into());
        }
        if self.auth_offered() {
            lines.push("AUTH PLAIN LOGIN".into());
        }
        self.ok(Reply::plain(250, lines))
    }

    /// AUTH is offered only over TLS, and only when there are credentials.
    pub(super) fn auth_offered(&self) -> bool {
        self.tls.is_some() && self.gw.logins.is_some() && self.user.is_none()
    }
}
