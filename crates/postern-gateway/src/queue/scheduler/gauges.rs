//! The queue's gauges (messages and recipients by state, the oldest message's age,
//! outbound connections busy or idle): a full pass over the queue, so the scheduler
//! runs it every few seconds rather than at every change.

use super::super::retry::now_unix;
use super::Scheduler;

impl Scheduler {
    /// Queue depth and age for the metrics; a full pass, so only every few seconds.
    pub(super) fn update_gauges(&self) {
        let hold = self.delivery.is_none();
        let now = now_unix();
        let (mut msgs, mut rcpts) = ([0i64; 3], [0i64; 3]);
        let mut oldest = now;
        for e in self.entries.values() {
            let state = if hold {
                2
            } else if e.outstanding > 0 || e.state.next_attempt <= now {
                0
            } else {
                1
            };
            msgs[state] += 1;
            rcpts[state] += e.state.pending().count() as i64;
            oldest = oldest.min(e.msg.envelope.received_at);
        }
        for (i, name) in ["ready", "deferred", "held"].into_iter().enumerate() {
            self.metrics
                .queue_messages
                .with_label_values(&[name])
                .set(msgs[i]);
            self.metrics
                .queue_recipients
                .with_label_values(&[name])
                .set(rcpts[i]);
        }
        self.metrics
            .queue_oldest_age
            .set(i64::try_from(now - oldest).unwrap_or(0));
        let idle = self.pool.idle_count();
        let gauge = |state: &str, n: usize| {
            self.metrics
                .outbound_open
                .with_label_values(&[state])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        };
        gauge("busy", self.pool.total().saturating_sub(idle));
        gauge("idle", idle);
    }
}
