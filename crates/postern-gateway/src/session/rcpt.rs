//! RCPT TO (RFC 5321 §4.1.1.3): the relay rule lives here. A recipient is accepted
//! only from an authenticated user, or on a relay listener from a trusted network.
//! Postern has no local mailboxes, so everything else is relaying and refused.

use postern_config::ListenerKind;
use postern_proto::{EnhancedCode, ForwardPath, Reply};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Flow, Session};

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    pub(super) fn rcpt(&mut self, to: ForwardPath) -> Flow {
        let max = self.gw.config.limits.max_recipients;
        let may_relay = self.user.is_some()
            || (self.kind == ListenerKind::Relay && self.gw.config.relay.is_trusted(self.peer));
        let Some(txn) = &mut self.txn else {
            return self.refuse(Reply::new(
                503,
                EnhancedCode(5, 5, 1),
                "Error: need MAIL command",
            ));
        };
        if txn.content.is_some() {
            return self.refuse(Reply::new(
                503,
                EnhancedCode(5, 5, 1),
                "Error: RCPT not allowed during BDAT transfer",
            ));
        }
        if txn.rcpts.len() >= max {
            return self.refuse(Reply::new(
                452,
                EnhancedCode(4, 5, 3),
                format!("Error: too many recipients (limit {max} per message)"),
            ));
        }
        let addr = match to {
            ForwardPath::Address(a) => a,
            ForwardPath::Postmaster => {
                return self.refuse(Reply::new(
                    550,
                    EnhancedCode(5, 1, 1),
                    "<postmaster>: Recipient address rejected: this gateway has no local mailboxes",
                ));
            }
        };
        if addr.needs_smtputf8() && !txn.params.smtputf8 {
            return self.refuse(Reply::new(
                553,
                EnhancedCode(5, 6, 7),
                "Recipient address has non-ASCII characters; MAIL needs the SMTPUTF8 parameter",
            ));
        }
        if !may_relay {
            let text = format!("<{addr}>: Relay access denied");
            return self.refuse(Reply::new(554, EnhancedCode(5, 7, 1), text));
        }
        txn.rcpts.push(addr.to_string());
        self.ok(Reply::new(250, EnhancedCode(2, 1, 5), "Ok"))
    }
}
