//! What a delivery result leaves behind besides the queue's state: the attempt and
//! latency metrics and one `delivery` log line per recipient (from, to, relay,
//! delay, dsn, tls, status, detail), the lines an operator greps by queue ID.

use crate::metrics::Metrics;
use crate::outbound::outcome::{Outcome, RcptResult};
use crate::spool::Envelope;

use super::retry::{now_ms, now_unix};

/// Counts and logs one recipient's result.
pub fn result(metrics: &Metrics, dest: &str, env: &Envelope, address: &str, r: &RcptResult) {
    let label = metrics.destination(dest);
    let reason = r.outcome.reason();
    metrics
        .delivery_attempts
        .with_label_values(&[r.outcome.label(), reason.class_label(), label])
        .inc();
    if let Outcome::Delivered(_) = r.outcome {
        let accepted_ms = if env.received_at_ms > 0 {
            env.received_at_ms
        } else {
            env.received_at * 1000
        };
        let latency = now_ms().saturating_sub(accepted_ms) as f64 / 1000.0;
        metrics
            .delivery_latency
            .with_label_values(&[label])
            .observe(latency);
    }
    let status = match r.outcome {
        Outcome::Delivered(_) => "sent",
        Outcome::Deferred(_) => "deferred",
        Outcome::Bounced(_) => "bounced",
    };
    tracing::info!(
        id = %env.id,
        from = %format!("<{}>", env.sender),
        to = %format!("<{address}>"),
        relay = r.remote.as_deref().unwrap_or("none"),
        delay = now_unix().saturating_sub(env.received_at),
        dsn = %reason.status,
        tls = ?r.tls,
        status,
        detail = %reason.detail,
        "delivery"
    );
}
