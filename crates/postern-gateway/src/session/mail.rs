//! MAIL FROM (RFC 5321 §4.1.1.2): opens a transaction once the session may send at
//! all (greeted; on submission listeners TLS and AUTH first), the declared size fits,
//! and an authenticated user owns the sender address.

use postern_proto::{EnhancedCode, MailParams, Reply, ReversePath};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Flow, Session, Transaction};
use crate::policy::{Refusal, sender};

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    pub(super) fn mail(&mut self, from: ReversePath, params: MailParams) -> Flow {
        if self.greeting.is_none() {
            return self.refuse(Refusal::NeedHeloOrEhlo);
        }
        if self.txn.is_some() {
            return self.refuse(Refusal::NestedMail);
        }
        if let Err(r) =
            sender::may_start_transaction(self.kind, self.tls.is_some(), self.user.is_some())
        {
            return self.refuse(r);
        }
        if self
            .gw
            .health
            .low_space
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return self.refuse(Refusal::LowSpace);
        }
        if !self.gw.message_rate.allow(self.peer) {
            return self.refuse(Refusal::MessageRate);
        }
        let max = self.gw.config.limits.max_message_size;
        if params.size.is_some_and(|s| s > max) {
            return self.refuse(Refusal::DeclaredSizeTooLarge { limit: max });
        }
        if let ReversePath::Address(a) = &from
            && a.needs_smtputf8()
            && !params.smtputf8
        {
            return self.refuse(Refusal::SenderNeedsSmtputf8);
        }
        if let Err(r) = sender::may_send_as(self.user.as_deref(), &from) {
            return self.refuse(r);
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
