//! MAIL FROM (RFC 5321 §4.1.1.2): opens a transaction once the session may send at
//! all (greeted; on submission listeners TLS and AUTH first), the declared size fits,
//! and an authenticated user owns the sender address.

use postern_config::ListenerKind;
use postern_proto::{EnhancedCode, MailParams, Reply, ReversePath};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Flow, Session, Transaction};

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    pub(super) fn mail(&mut self, from: ReversePath, params: MailParams) -> Flow {
        if self.greeting.is_none() {
            return self.refuse(Reply::new(
                503,
                EnhancedCode(5, 5, 1),
                "Error: send HELO/EHLO first",
            ));
        }
        if self.txn.is_some() {
            return self.refuse(Reply::new(
                503,
                EnhancedCode(5, 5, 1),
                "Error: nested MAIL command",
            ));
        }
        let submission = matches!(
            self.kind,
            ListenerKind::Submission | ListenerKind::Submissions
        );
        if submission && self.tls.is_none() {
            return self.refuse(Reply::new(
                530,
                EnhancedCode(5, 7, 0),
                "Must issue a STARTTLS command first",
            ));
        }
        if submission && self.user.is_none() {
            return self.refuse(Reply::new(
                530,
                EnhancedCode(5, 7, 0),
                "Authentication required",
            ));
        }
        if self
            .gw
            .health
            .low_space
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return self.refuse(Reply::new(
                452,
                EnhancedCode(4, 3, 1),
                "Insufficient system storage; try again later",
            ));
        }
        if !self.gw.message_rate.allow(self.peer) {
            return self.refuse(Reply::new(
                450,
                EnhancedCode(4, 7, 1),
                "Error: too much mail from your address; try again later",
            ));
        }
        let max = self.gw.config.limits.max_message_size;
        if params.size.is_some_and(|s| s > max) {
            return self.refuse(Reply::new(
                552,
                EnhancedCode(5, 3, 4),
                format!("Message size exceeds fixed maximum message size ({max} octets)"),
            ));
        }
        if let ReversePath::Address(a) = &from
            && a.needs_smtputf8()
            && !params.smtputf8
        {
            return self.refuse(Reply::new(
                553,
                EnhancedCode(5, 6, 7),
                "Sender address has non-ASCII characters; MAIL needs the SMTPUTF8 parameter",
            ));
        }
        if let Some(user) = &self.user {
            let allowed = match &from {
                ReversePath::Address(a) => user.may_send_as(&a.to_string()),
                ReversePath::Null => false,
            };
            if !allowed {
                let text = format!(
                    "<{from}>: Sender address rejected: not owned by user {}",
                    user.name
                );
                return self.refuse(Reply::new(553, EnhancedCode(5, 7, 1), text));
            }
        }
        self.txn = Some(Transaction {
            from,
            params,
            rcpts: Vec::new(),
            content: None,
        });
        self.ok(Reply::new(250, EnhancedCode(2, 1, 0), "Ok"))
    }
}
