//! One delivery run to one destination: try its hosts in order, each address in
//! turn; on the first that takes a session, send every job over that connection
//! (connection reuse). A connection failure, a refused greeting or EHLO, or a
//! temporary refusal of MAIL moves the remaining jobs to the next host; what no host
//! took is deferred with the last reason.
//!
//! A run hands back the connection it ended on when it is still sound, so that the
//! queue can keep it for the destination's next messages ([`Deliverer::resume`]); a
//! kept connection that fails (the server closed it meanwhile) sends its jobs back
//! through the normal route.

use std::collections::VecDeque;
use std::sync::Arc;

use postern_config::DeliveryConfig;
use postern_proto::EnhancedCode;
use rustls::ClientConfig;

use super::client::ClientTimeouts;
use super::connection::{Connection, Connector};
use super::outcome::{Outcome, RcptResult, Reason, TlsUsed};
use super::route::Route;
use super::transaction::Job;
use crate::spool::Spool;

/// Results by message (queue ID, one result per recipient sent to).
pub type Results = Vec<(String, Vec<RcptResult>)>;

/// Results by message, and the connection to keep when it is still sound.
pub type RunResult = (Results, Option<Connection>);

/// Everything a delivery run needs besides the route and the jobs.
pub struct Deliverer {
    pub connector: Connector,
    pub max_rcpts: usize,
    /// Where the content of messages comes from.
    pub spool: Spool,
}

impl Deliverer {
    pub fn new(
        cfg: &DeliveryConfig,
        helo: String,
        verified: Arc<ClientConfig>,
        unverified: Arc<ClientConfig>,
        spool: Spool,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Self {
        let t = &cfg.timeouts;
        Self {
            connector: Connector {
                helo,
                connect_timeout: t.connect,
                timeouts: ClientTimeouts {
                    greeting: t.greeting,
                    command: t.command,
                    data_init: t.data_init,
                    data_block: t.data_block,
                    data_done: t.data_done,
                },
                verified,
                unverified,
                metrics,
            },
            max_rcpts: cfg.limits.max_recipients_per_transaction,
            spool,
        }
    }

    /// Sends `jobs` over a connection kept from an earlier run. Returns the results of
    /// what went, the jobs still to send (when the connection failed; they should take
    /// the normal route) and the connection while it is sound.
    pub async fn resume(
        &self,
        mut conn: Connection,
        jobs: Vec<Job>,
    ) -> (Results, Vec<Job>, Option<Connection>) {
        let mut remaining: VecDeque<Job> = jobs.into();
        let mut results = Vec::new();
        match self.send_all(&mut conn, &mut remaining, &mut results).await {
            Ok(()) => (results, Vec::new(), Some(conn)),
            Err(why) => {
                // Typically the server closed the connection while it was kept.
                tracing::info!(host = %conn.remote, reason = %why.detail, "kept connection no longer usable; opening a new one");
                (results, remaining.into(), None)
            }
        }
    }

    /// Ends a kept connection politely.
    pub async fn close(&self, mut conn: Connection) {
        conn.client.quit().await;
    }

    /// Sends jobs from the front of `remaining` until none is left, or the connection
    /// fails (the reason): the failed job is back at the front, unless part of it went
    /// through (then its results are in `results`, the rest of it deferred).
    async fn send_all(
        &self,
        conn: &mut Connection,
        remaining: &mut VecDeque<Job>,
        results: &mut Results,
    ) -> Result<(), Reason> {
        while let Some(job) = remaining.pop_front() {
            match conn.send_job(&job, &self.spool, self.max_rcpts).await {
                Ok(r) => {
                    conn.sent += 1;
                    results.push((job.id, r));
                    if let Some(why) = conn.broken.take() {
                        return Err(why);
                    }
                }
                Err(why) => {
                    remaining.push_front(job);
                    return Err(why);
                }
            }
        }
        Ok(())
    }

    /// Delivers `jobs` along `route`; returns every recipient's result, by message,
    /// and the connection the run ended on when it is still sound.
    pub async fn run(&self, route: &Route, jobs: Vec<Job>, dest_label: &str) -> RunResult {
        let mut remaining: VecDeque<Job> = jobs.into();
        let mut results = Vec::new();
        let mut kept = None;
        let mut last = Reason::new(EnhancedCode(4, 4, 1), "no host to deliver to");
        'hops: for hop in &route.hops {
            for &addr in &hop.addrs {
                if remaining.is_empty() {
                    break 'hops;
                }
                let mut session = match self.connector.open(hop, addr, route, dest_label).await {
                    Ok(s) => s,
                    Err(why) => {
                        tracing::info!(host = %hop.name, %addr, reason = %why.detail, "next hop failed");
                        last = why;
                        continue;
                    }
                };
                match self
                    .send_all(&mut session, &mut remaining, &mut results)
                    .await
                {
                    Ok(()) => kept = Some(session),
                    Err(why) => {
                        tracing::info!(host = %session.remote, reason = %why.detail, "session failed; trying the next host");
                        last = why;
                    }
                }
            }
        }
        results.extend(remaining.into_iter().map(|job| defer_all(job, &last)));
        (results, kept)
    }
}

/// Every recipient of `job` deferred (or bounced, per `outcome`) with one reason.
pub fn settle_all(job: Job, outcome: &Outcome) -> (String, Vec<RcptResult>) {
    let rcpts = job
        .rcpts
        .iter()
        .map(|&(index, _)| RcptResult {
            index,
            outcome: outcome.clone(),
            remote: None,
            tls: TlsUsed::None,
        })
        .collect();
    (job.id, rcpts)
}

fn defer_all(job: Job, why: &Reason) -> (String, Vec<RcptResult>) {
    settle_all(job, &Outcome::Deferred(why.clone()))
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::super::route::{Hop, TlsMode};
    use super::*;

    /// A scripted server: takes the first transaction, then drops the connection at
    /// the next MAIL. Returns its address.
    async fn server_dropping_second_transaction() -> SocketAddr {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let (r, mut w) = tcp.into_split();
            let mut lines = BufReader::new(r).lines();
            w.write_all(b"220 scripted\r\n").await.unwrap();
            let mut transactions = 0;
            let mut in_data = false;
            while let Ok(Some(line)) = lines.next_line().await {
                let reply: &[u8] = if in_data {
                    if line != "." {
                        continue;
                    }
                    in_data = false;
                    b"250 2.0.0 queued\r\n"
                } else if line.starts_with("EHLO") {
                    b"250 scripted\r\n"
                } else if line.starts_with("MAIL") {
                    transactions += 1;
                    if transactions == 2 {
                        return;
                    }
                    b"250 2.1.0 ok\r\n"
                } else if line.starts_with("RCPT") {
                    b"250 2.1.5 ok\r\n"
                } else if line == "DATA" {
                    in_data = true;
                    b"354 go on\r\n"
                } else {
                    b"250 ok\r\n"
                };
                w.write_all(reply).await.unwrap();
            }
        });
        addr
    }

    /// A job split into transactions that fails after the first one went through:
    /// the recipients already delivered stay delivered (never sent twice), the rest
    /// is deferred, and the connection is not kept.
    #[tokio::test]
    async fn a_job_failing_after_its_first_transaction_is_not_resent() {
        let dir = tempfile::tempdir().unwrap();
        let body = b"Subject: split\r\n\r\nhello\r\n";
        let metrics = Arc::new(crate::metrics::Metrics::new(&[]).unwrap());
        let (spool, _) = crate::spool::Spool::open(dir.path(), 0, metrics.clone()).unwrap();
        let mut writer = spool.create();
        let id = writer.id().to_owned();
        writer.write(body).await.unwrap();
        let envelope = crate::spool::Envelope {
            id: id.clone(),
            sender: "a@gw.test".into(),
            recipients: (0..3).map(|i| format!("r{i}@scripted.test")).collect(),
            received_at: 1,
            received_at_ms: 1000,
            client_ip: "127.0.0.1".into(),
            helo: "client".into(),
            auth_user: None,
            listener: "relay".into(),
            smtputf8: false,
            eight_bit: false,
        };
        writer.commit(&envelope).await.unwrap();
        let mut cfg = DeliveryConfig::default();
        cfg.limits.max_recipients_per_transaction = 2;
        let deliverer = Deliverer::new(
            &cfg,
            "gw.test".into(),
            crate::outbound::tls::client_config(false, None).unwrap(),
            crate::outbound::tls::client_config(false, None).unwrap(),
            spool,
            metrics,
        );
        let route = Route {
            hops: vec![Hop {
                name: "scripted.test".into(),
                addrs: vec![server_dropping_second_transaction().await],
            }],
            tls: TlsMode::None,
            auth: None,
        };
        let job = Job {
            id,
            sender: "a@gw.test".into(),
            smtputf8: false,
            eight_bit: false,
            size: body.len() as u64,
            rcpts: (0..3).map(|i| (i, format!("r{i}@scripted.test"))).collect(),
        };
        let (results, kept) = deliverer.run(&route, vec![job], "other").await;
        assert!(kept.is_none());
        assert_eq!(results.len(), 1);
        let outcomes: Vec<(usize, &str)> = results[0]
            .1
            .iter()
            .map(|r| (r.index, r.outcome.label()))
            .collect();
        assert_eq!(
            outcomes,
            [(0, "delivered"), (1, "delivered"), (2, "deferred")]
        );
    }
}
