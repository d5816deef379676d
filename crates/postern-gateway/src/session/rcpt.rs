//! RCPT TO (RFC 5321 §4.1.1.3): the recipient limit, then the relay rule
//! ([`crate::policy::relay`]). Postern has no local mailboxes, so every recipient is
//! relaying.

use postern_proto::{EnhancedCode, ForwardPath, Reply};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Flow, Session};
use crate::policy::{Refusal, relay};

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    pub(super) fn rcpt(&mut self, to: ForwardPath) -> Flow {
        let max = self.gw.config.limits.max_recipients;
        let Some(txn) = &mut self.txn else {
            return self.refuse(Refusal::NeedMail);
        };
        if txn.content.is_some() {
            return self.refuse(Refusal::DuringBdat("RCPT"));
        }
        if txn.rcpts.len() >= max {
            return self.refuse(Refusal::TooManyRecipients { limit: max });
        }
        let addr = match to {
            ForwardPath::Address(a) => a,
            ForwardPath::Postmaster => return self.refuse(Refusal::Postmaster),
        };
        if addr.needs_smtputf8() && !txn.params.smtputf8 {
            return self.refuse(Refusal::RecipientNeedsSmtputf8);
        }
        let addr = addr.to_string();
        let relay = &self.gw.config.relay;
        if let Err(r) = relay::may_relay(self.kind, self.user.is_some(), self.peer, relay, &addr) {
            return self.refuse(r);
        }
        let Some(txn) = &mut self.txn else {
            return self.refuse(Refusal::NeedMail);
        };
        txn.rcpts.push(addr);
        self.ok(Reply::new(250, EnhancedCode(2, 1, 5), "Ok"))
    }
}
