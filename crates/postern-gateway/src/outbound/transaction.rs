//! Sending one message over an open session: its recipients split into
//! transactions of bounded size, each recipient settled by its own reply (RCPT
//! refusal, or the verdict on the data). A message is checked against what the server
//! offers first (SMTPUTF8, SIZE): what it cannot take bounces without a try.

use postern_proto::EnhancedCode;

use super::client::Outgoing;
use super::connection::Connection;
use super::outcome::{Outcome, RcptResult, Reason};
use crate::spool::Spool;

/// One message's share of a delivery run: the recipients for this destination.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: String,
    pub sender: String,
    pub smtputf8: bool,
    pub eight_bit: bool,
    pub size: u64,
    /// (index in the message's recipient list, address)
    pub rcpts: Vec<(usize, String)>,
}

impl Connection {
    /// Sends one job. An error means nothing of it went and the session is unusable
    /// (or MAIL was refused temporarily): the job should go to the next host. Once a
    /// transaction of the job went through, it is never sent again as a whole (that
    /// would deliver twice to the earlier recipients): the rest is deferred and the
    /// connection marked broken when it cannot go on.
    pub(super) async fn send_job(
        &mut self,
        job: &Job,
        spool: &Spool,
        max_rcpts: usize,
    ) -> Result<Vec<RcptResult>, Reason> {
        let (remote, tls) = (self.remote.clone(), self.tls);
        let result = |index: usize, outcome: Outcome| RcptResult {
            index,
            outcome,
            remote: Some(remote.clone()),
            tls,
        };
        let refuse_all = |status: EnhancedCode, why: String| {
            job.rcpts
                .iter()
                .map(|&(i, _)| result(i, Outcome::Bounced(Reason::new(status, why.clone()))))
                .collect::<Vec<_>>()
        };
        if job.smtputf8 && !self.client.caps.smtputf8 {
            let why = format!("{remote} does not support SMTPUTF8, which the message needs");
            return Ok(refuse_all(EnhancedCode(5, 6, 7), why));
        }
        if let Some(limit) = self.client.caps.size
            && job.size > limit
        {
            let why = format!(
                "message size {} exceeds the limit of {remote} ({limit} octets)",
                job.size
            );
            return Ok(refuse_all(EnhancedCode(5, 3, 4), why));
        }
        let mut out = Vec::with_capacity(job.rcpts.len());
        let defer_from = |out: &mut Vec<RcptResult>, from: usize, reason: &Reason| {
            for &(i, _) in job.rcpts.iter().skip(from) {
                out.push(result(i, Outcome::Deferred(reason.clone())));
            }
        };
        for (n, chunk) in job.rcpts.chunks(max_rcpts.max(1)).enumerate() {
            let start = n * max_rcpts.max(1);
            let addrs: Vec<String> = chunk.iter().map(|(_, a)| a.clone()).collect();
            let msg = Outgoing {
                sender: &job.sender,
                recipients: &addrs,
                size: job.size,
                eight_bit: job.eight_bit,
                smtputf8: job.smtputf8,
            };
            let mut body = match spool.open_body(&job.id, job.size).await {
                Ok(b) => b,
                Err(e) => {
                    // Nothing of this transaction was sent: the connection is sound.
                    let why = Reason::new(
                        EnhancedCode(4, 3, 0),
                        format!("cannot read queued message: {e}"),
                    );
                    defer_from(&mut out, start, &why);
                    return Ok(out);
                }
            };
            let tx = match self.client.send(&msg, &mut body).await {
                Ok(tx) => tx,
                Err(e) => {
                    let why = Reason::of_session(&e, format!("{remote}: {e}"));
                    if out.is_empty() {
                        return Err(why);
                    }
                    defer_from(&mut out, start, &why);
                    self.broken = Some(why);
                    return Ok(out);
                }
            };
            if tx.mail.is_transient() {
                let rset = self.client.rset().await;
                let detail = format!("{remote}: MAIL FROM refused: {}", tx.mail);
                if out.is_empty() {
                    return Err(Reason::new(EnhancedCode(4, 0, 0), detail));
                }
                let why = Reason::new(Reason::of_reply(&tx.mail).status, detail);
                defer_from(&mut out, start, &why);
                if let Err(e) = rset {
                    self.broken =
                        Some(Reason::new(EnhancedCode(4, 4, 2), format!("{remote}: {e}")));
                }
                return Ok(out);
            }
            for (k, &(index, _)) in chunk.iter().enumerate() {
                out.push(result(index, Outcome::of_reply(tx.verdict(k))));
            }
            if tx.data.is_none() {
                // Nothing was sent; make sure the server forgets the transaction. If it
                // does not answer, replies could be out of step: the connection is done.
                if let Err(e) = self.client.rset().await {
                    let why = Reason::new(EnhancedCode(4, 4, 2), format!("{remote}: {e}"));
                    defer_from(&mut out, start + chunk.len(), &why);
                    self.broken = Some(why);
                    return Ok(out);
                }
            }
        }
        Ok(out)
    }
}
