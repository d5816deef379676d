//! Delivery workers: a worker takes a destination's messages, delivers them along the
//! destination's route, reports the results to the scheduler, and then keeps its
//! connection open for more of that destination's messages while the scheduler has
//! any for it, within the per-connection message count and age limits.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::Event;
use crate::outbound::connection::Connection;
use crate::outbound::route::Router;
use crate::outbound::transaction::Job;
use crate::outbound::worker::{Deliverer, RunResult, settle_all};

/// Routing and delivery, shared by every worker.
pub struct Delivery {
    pub router: Router,
    pub deliverer: Deliverer,
}

impl Delivery {
    /// Delivers `jobs` to `dest`, first over `conn` (kept from an earlier run) when
    /// given; returns the results and the connection to keep, if it is sound.
    async fn deliver(&self, dest: &str, jobs: Vec<Job>, conn: Option<Connection>) -> RunResult {
        let mut done = Vec::new();
        let mut jobs = jobs;
        if let Some(conn) = conn {
            let (results, rest, kept) = self.deliverer.resume(conn, jobs).await;
            if kept.is_some() || rest.is_empty() {
                return (results, kept);
            }
            done = results;
            jobs = rest;
        }
        let (results, kept) = match self.router.route(dest).await {
            Ok(route) => {
                let label = self.deliverer.connector.metrics.destination(dest);
                self.deliverer.run(&route, jobs, label).await
            }
            Err(outcome) => (
                jobs.into_iter().map(|j| settle_all(j, &outcome)).collect(),
                None,
            ),
        };
        done.extend(results);
        (done, kept)
    }
}

/// Limits of one kept connection.
#[derive(Debug, Clone, Copy)]
pub struct KeepLimits {
    pub max_messages: usize,
    pub max_age: Duration,
}

/// Starts a worker for `dest` with its first `jobs`.
pub fn spawn(
    delivery: Arc<Delivery>,
    tx: mpsc::UnboundedSender<Event>,
    dest: String,
    jobs: Vec<Job>,
    limits: KeepLimits,
) {
    tokio::spawn(async move {
        let mut jobs = jobs;
        let mut conn = None;
        loop {
            let (results, kept) = delivery.deliver(&dest, jobs, conn.take()).await;
            let room = kept.as_ref().map_or(0, |c: &Connection| {
                if c.age() < limits.max_age {
                    limits.max_messages.saturating_sub(c.sent())
                } else {
                    0
                }
            });
            let (more, next) = oneshot::channel();
            let idle = (room > 0).then_some((more, room));
            let _ = tx.send(Event::Done {
                dest: dest.clone(),
                results,
                idle,
            });
            let Some(c) = kept else {
                return;
            };
            match next.await {
                Ok(more_jobs) if !more_jobs.is_empty() => {
                    jobs = more_jobs;
                    conn = Some(c);
                }
                // Nothing more, or the connection was not kept: QUIT.
                _ => {
                    delivery.deliverer.close(c).await;
                    return;
                }
            }
        }
    });
}
