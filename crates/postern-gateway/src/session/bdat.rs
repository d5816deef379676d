//! BDAT (RFC 3030 CHUNKING): exactly `size` octets follow the command, no
//! dot-stuffing. The octets are always read, even when the chunk is refused, so the
//! session stays in step with the client. A refused chunk ends the transaction.

use postern_proto::{EnhancedCode, Reply};
use tokio::io::{AsyncRead, AsyncWrite};

use super::data::feed;
use super::{Flow, Session};
use crate::policy::Refusal;

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    pub(super) async fn bdat(&mut self, size: u64, last: bool) -> Flow {
        let problem = match &self.txn {
            None => Some(Refusal::NeedMail.reply()),
            Some(t) if t.rcpts.is_empty() => Some(Refusal::NoValidRecipients.reply()),
            Some(_) => None,
        };
        if problem.is_none() && self.txn.as_ref().is_some_and(|t| t.content.is_none()) {
            self.begin_content().await;
        }
        let max = self.gw.config.limits.max_message_size;
        let mut remaining = size;
        while remaining > 0 {
            let buffered = self.wire.buffered().len() as u64;
            if buffered > 0 {
                let n = remaining.min(buffered) as usize;
                let start = self.wire.start;
                let chunk = &self.wire.buf[start..start + n];
                if problem.is_none()
                    && let Some(c) = self.txn.as_mut().and_then(|t| t.content.as_mut())
                {
                    feed(c, max, chunk).await;
                }
                self.wire.consume(n);
                remaining -= n as u64;
                continue;
            }
            let timeout = self.gw.config.timeouts.data;
            if let Err(e) = self.wire.fill(timeout, None).await {
                tracing::info!(client = %self.peer, "connection ended during BDAT; message dropped");
                return Flow::End(self.read_failed(e));
            }
        }
        if let Some(r) = problem {
            return self.refuse(r);
        }
        let failed = self
            .txn
            .as_ref()
            .and_then(|t| t.content.as_ref())
            .is_some_and(|c| c.oversize || c.spool_failed || c.checker.fault().is_some());
        if last || failed {
            let reply = self.finish_message().await;
            return if reply.is_completion() {
                self.ok(reply)
            } else {
                self.refuse(reply)
            };
        }
        self.ok(Reply::new(
            250,
            EnhancedCode(2, 0, 0),
            format!("Ok: {size} octets received"),
        ))
    }
}
