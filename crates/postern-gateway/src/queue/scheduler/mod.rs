//! The scheduler: one task owns all queue state (messages, per-destination ready
//! queues, retry timers, the connection pool), so there are no locks around the
//! queue. It reacts to events (a new message, a worker's results, a flush, a timer)
//! and never waits on the disk: writing a DSN, recording delivery state and removing
//! finished messages run in tasks of their own.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use postern_config::{DeliveryMode, GatewayConfig};
use tokio::sync::{mpsc, oneshot};

use super::dsn::Notice;
use super::pool::{Idle, Pool};
use super::retry::{expired, humanize, now_unix, random_unit};
use super::state::{self, DeliveryState, RcptStatus};
use super::worker::{self, Delivery, KeepLimits};
use super::{Event, record};
use crate::metrics::Metrics;
use crate::outbound::outcome::{Outcome, RcptResult, Reason};
use crate::outbound::transaction::Job;
use crate::spool::{Spool, SpooledMessage, StateStore};

/// A recipient that failed for good in this attempt, for the DSN.
struct Failed {
    index: usize,
    reason: Reason,
    remote: Option<String>,
}

struct Entry {
    msg: SpooledMessage,
    state: DeliveryState,
    /// Destinations of this attempt not yet reported back.
    outstanding: usize,
    /// Recipients that failed for good in this attempt.
    failed_now: Vec<Failed>,
}

/// How a waiting worker is handed more jobs (dropping it closes the connection).
type MoreJobs = oneshot::Sender<Vec<Job>>;

pub(super) struct Scheduler {
    pub(super) config: Arc<GatewayConfig>,
    pub(super) spool: Spool,
    pub(super) states: StateStore,
    /// None when delivery is on hold.
    pub(super) delivery: Option<Arc<Delivery>>,
    pub(super) tx: mpsc::UnboundedSender<Event>,
    pub(super) metrics: Arc<Metrics>,
    entries: HashMap<String, Entry>,
    ready: HashMap<String, VecDeque<String>>,
    timers: BinaryHeap<Reverse<(Instant, String)>>,
    pool: Pool<MoreJobs>,
}

/// Where a recipient's mail goes: its domain (MX) or the smarthost.
pub(super) fn destination(mode: DeliveryMode, rcpt: &str) -> String {
    match mode {
        DeliveryMode::Smarthost => "smarthost".to_owned(),
        _ => rcpt
            .rsplit_once('@')
            .map(|(_, d)| d.to_lowercase())
            .unwrap_or_default(),
    }
}

impl Scheduler {
    pub(super) fn new(
        config: Arc<GatewayConfig>,
        spool: Spool,
        states: StateStore,
        delivery: Option<Arc<Delivery>>,
        tx: mpsc::UnboundedSender<Event>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            config,
            spool,
            states,
            delivery,
            tx,
            metrics,
            entries: HashMap::new(),
            ready: HashMap::new(),
            timers: BinaryHeap::new(),
            pool: Pool::default(),
        }
    }

    /// Queues the messages found in the spool at start, resuming their recorded
    /// delivery state (blocking reads: this runs once, before the scheduler task).
    pub(super) fn recover(&mut self, recovered: Vec<SpooledMessage>) {
        let known: std::collections::HashSet<&str> =
            recovered.iter().map(|m| m.envelope.id.as_str()).collect();
        self.states.retain_blocking(&known);
        for msg in recovered {
            let state = state::load(&self.states, &msg.envelope.id);
            self.add(msg, state);
        }
    }

    pub(super) async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Event>) {
        // Messages recovered from the spool are ready before any event arrives.
        self.release_due();
        self.dispatch();
        let mut gauges = tokio::time::interval(Duration::from_secs(5));
        loop {
            let next_timer = self
                .timers
                .peek()
                .map(|Reverse((t, _))| *t)
                .into_iter()
                .chain(self.pool.next_deadline())
                .min();
            let sleep = async {
                match next_timer {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            };
            let event = tokio::select! {
                e = rx.recv() => match e {
                    Some(e) => Some(e),
                    None => return,
                },
                _ = sleep => None,
                _ = gauges.tick() => {
                    self.update_gauges();
                    None
                }
            };
            match event {
                Some(Event::Add(msg)) => self.add(msg, None),
                Some(Event::Done {
                    dest,
                    results,
                    idle,
                }) => {
                    self.done(&dest, results);
                    self.park(dest, idle);
                }
                Some(Event::Flush) => self.flush().await,
                None => {}
            }
            self.release_due();
            self.pool.close_expired(Instant::now());
            self.dispatch();
        }
    }

    /// A worker reported back: keep its connection for the destination's next
    /// messages, or count it closed.
    fn park(&mut self, dest: String, idle: Option<(MoreJobs, usize)>) {
        let wait = self.config.delivery.limits.idle_connection_time;
        match idle {
            Some((more, room)) if room > 0 && !wait.is_zero() => {
                let deadline = Instant::now() + wait;
                self.pool.park(
                    dest,
                    Idle {
                        deadline,
                        more,
                        room,
                    },
                );
            }
            // Dropping `more` tells the worker to close.
            _ => self.pool.closed(&dest),
        }
    }

    /// Queues a message with its recorded delivery state (a recovered one) or none
    /// (a new one).
    fn add(&mut self, msg: SpooledMessage, recorded: Option<DeliveryState>) {
        let id = msg.envelope.id.clone();
        let state = recorded
            .filter(|s| s.recipients.len() == msg.envelope.recipients.len())
            .unwrap_or_else(|| DeliveryState::new(&msg.envelope.recipients));
        let due = state.next_attempt;
        self.entries.insert(
            id.clone(),
            Entry {
                msg,
                state,
                outstanding: 0,
                failed_now: Vec::new(),
            },
        );
        let now = now_unix();
        if due <= now {
            self.enqueue(&id);
        } else {
            self.timers.push(Reverse((
                Instant::now() + Duration::from_secs(due - now),
                id,
            )));
        }
    }

    /// Makes every waiting message due, and drops those removed by an administrator.
    async fn flush(&mut self) {
        let ids = self.entries.keys().cloned().collect();
        let gone = self.spool.missing(ids).await;
        for id in gone {
            tracing::info!(id = %id, "removed from the queue by administrator");
            self.entries.remove(&id);
            self.states.remove(&id).await;
        }
        let now = Instant::now();
        self.timers = self
            .timers
            .drain()
            .map(|Reverse((_, id))| Reverse((now, id)))
            .collect();
    }

    fn release_due(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((t, _))) = self.timers.peek() {
            if *t > now {
                break;
            }
            if let Some(Reverse((_, id))) = self.timers.pop() {
                self.enqueue(&id);
            }
        }
    }

    /// Puts a message on the ready queue of every destination it has pending
    /// recipients for, or bounces what is left of it when it has expired.
    fn enqueue(&mut self, id: &str) {
        let lifetime = self.config.delivery.retry.max_lifetime;
        let mode = self.config.delivery.mode;
        let Some(entry) = self.entries.get_mut(id) else {
            return;
        };
        if entry.outstanding > 0 {
            return;
        }
        let age = Duration::from_secs(now_unix().saturating_sub(entry.msg.envelope.received_at));
        if expired(entry.state.attempts, age, lifetime) {
            let pending: Vec<usize> = entry.state.pending().collect();
            for i in pending {
                let r = &mut entry.state.recipients[i];
                let why = format!(
                    "delivery time expired after {}; last result: {}",
                    humanize(age),
                    r.last_result.as_deref().unwrap_or("none")
                );
                r.status = RcptStatus::Bounced;
                let label = self.metrics.destination(&destination(mode, &r.address));
                self.metrics
                    .delivery_attempts
                    .with_label_values(&["bounced", "4", label])
                    .inc();
                tracing::info!(id, to = %r.address, status = "expired", dsn = "4.4.7", detail = %why, "delivery");
                entry.failed_now.push(Failed {
                    index: i,
                    reason: Reason::new(postern_proto::EnhancedCode(4, 4, 7), why),
                    remote: r.remote.clone(),
                });
            }
            self.finish_attempt(id);
            return;
        }
        let mut dests: Vec<String> = entry
            .state
            .pending()
            .map(|i| destination(mode, &entry.state.recipients[i].address))
            .collect();
        dests.sort();
        dests.dedup();
        entry.outstanding = dests.len();
        for d in dests {
            self.ready.entry(d).or_default().push_back(id.to_owned());
        }
    }

    fn dispatch(&mut self) {
        let Some(delivery) = self.delivery.clone() else {
            return;
        };
        let limits = self.config.delivery.limits.clone();
        let keep = KeepLimits {
            max_messages: limits.max_messages_per_connection,
            max_age: limits.max_connection_age,
        };
        let dests: Vec<String> = self
            .ready
            .iter()
            .filter(|(_, q)| !q.is_empty())
            .map(|(d, _)| d.clone())
            .collect();
        // First every destination's kept connections, the most recently used one
        // first (so that surplus ones reach their idle time); only then new ones, so that
        // making room under the global limit never closes a kept connection that had
        // work waiting.
        for dest in &dests {
            let mut parked_back = Vec::new();
            while self.ready.get(dest).is_some_and(|q| !q.is_empty()) {
                let Some(idle) = self.pool.take_idle(dest) else {
                    break;
                };
                let jobs = self.take_jobs(dest, idle.room);
                if jobs.is_empty() {
                    // Only messages removed meanwhile were queued.
                    parked_back.push(idle);
                    continue;
                }
                if let Err(jobs) = idle.more.send(jobs) {
                    // The worker is gone: its messages wait for the next connection.
                    if let Some(q) = self.ready.get_mut(dest) {
                        for job in jobs.into_iter().rev() {
                            q.push_front(job.id);
                        }
                    }
                    self.pool.closed(dest);
                }
            }
            for idle in parked_back {
                self.pool.park(dest.clone(), idle);
            }
        }
        for dest in dests {
            while self.ready.get(&dest).is_some_and(|q| !q.is_empty()) {
                if self.pool.active(&dest) >= limits.max_connections_per_destination {
                    break;
                }
                if self.pool.total() >= limits.max_connections
                    && !self.pool.close_idle_elsewhere(&dest)
                {
                    break;
                }
                let jobs = self.take_jobs(&dest, limits.max_messages_per_connection);
                if jobs.is_empty() {
                    continue;
                }
                self.pool.open(&dest);
                worker::spawn(delivery.clone(), self.tx.clone(), dest.clone(), jobs, keep);
            }
        }
        self.ready.retain(|_, q| !q.is_empty());
    }

    /// Up to `n` messages from the destination's ready queue, with their recipients
    /// there.
    fn take_jobs(&mut self, dest: &str, n: usize) -> Vec<Job> {
        let mode = self.config.delivery.mode;
        let Some(queue) = self.ready.get_mut(dest) else {
            return Vec::new();
        };
        let take = queue.len().min(n);
        let ids: Vec<String> = queue.drain(..take).collect();
        let mut jobs = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(e) = self.entries.get(&id) {
                let env = &e.msg.envelope;
                jobs.push(Job {
                    sender: env.sender.clone(),
                    smtputf8: env.smtputf8,
                    eight_bit: env.eight_bit,
                    size: e.msg.size,
                    rcpts: e
                        .state
                        .pending()
                        .filter(|&i| destination(mode, &e.state.recipients[i].address) == dest)
                        .map(|i| (i, e.state.recipients[i].address.clone()))
                        .collect(),
                    id,
                });
            }
        }
        jobs
    }

    /// A worker's results for `dest`: recorded per recipient; an attempt whose
    /// destinations have all reported is finished.
    fn done(&mut self, dest: &str, results: Vec<(String, Vec<RcptResult>)>) {
        for (id, rcpts) in results {
            let Some(entry) = self.entries.get_mut(&id) else {
                continue;
            };
            for r in rcpts {
                let Some(rs) = entry.state.recipients.get_mut(r.index) else {
                    continue;
                };
                rs.last_result = Some(r.outcome.reason().detail.clone());
                rs.remote = r.remote.clone();
                record::result(&self.metrics, dest, &entry.msg.envelope, &rs.address, &r);
                match r.outcome {
                    Outcome::Delivered(_) => rs.status = RcptStatus::Delivered,
                    Outcome::Bounced(reason) => {
                        rs.status = RcptStatus::Bounced;
                        entry.failed_now.push(Failed {
                            index: r.index,
                            reason,
                            remote: r.remote,
                        });
                    }
                    Outcome::Deferred(_) => {}
                }
            }
            entry.outstanding = entry.outstanding.saturating_sub(1);
            if entry.outstanding == 0 {
                self.finish_attempt(&id);
            }
        }
    }

    /// After every destination of an attempt reported (or the message expired): a
    /// DSN for new failures, then the message removed, or its next attempt scheduled.
    /// The disk work runs in a task of its own, in that order: a DSN is durable
    /// before the message it reports on is removed.
    fn finish_attempt(&mut self, id: &str) {
        let Some(mut entry) = self.entries.remove(id) else {
            return;
        };
        let notice = self.notice(&mut entry);
        let (spool, states, tx) = (self.spool.clone(), self.states.clone(), self.tx.clone());
        let metrics = self.metrics.clone();
        let id = id.to_owned();
        let queue_dsn = async move |spool: &Spool| {
            if let Some(notice) = notice
                && let Some(dsn) = notice.queue(spool).await
            {
                metrics.dsns.inc();
                let _ = tx.send(Event::Add(dsn));
            }
        };
        if entry.state.is_final() {
            // A state file exists only once an attempt failed.
            let had_state = entry.state.attempts > 0;
            tokio::spawn(async move {
                queue_dsn(&spool).await;
                spool.remove(&id).await;
                if had_state {
                    states.remove(&id).await;
                }
                tracing::info!(id, "removed");
            });
            return;
        }
        entry.state.attempts += 1;
        let delay = state::retry_delay(
            &self.config.delivery.retry,
            entry.state.attempts,
            random_unit(),
        );
        entry.state.next_attempt = now_unix() + delay.as_secs();
        let recorded = entry.state.clone();
        let task_id = id.clone();
        tokio::spawn(async move {
            queue_dsn(&spool).await;
            if let Err(e) = state::store(&states, &task_id, &recorded).await {
                tracing::warn!(id = %task_id, error = %e, "cannot record delivery state; it will be retried as new after a restart");
            }
        });
        self.timers
            .push(Reverse((Instant::now() + delay, id.clone())));
        self.entries.insert(id, entry);
    }

    /// The DSN for the recipients that failed in this attempt, if one is due (never
    /// for mail from the null sender).
    fn notice(&self, entry: &mut Entry) -> Option<Notice> {
        if entry.failed_now.is_empty() {
            return None;
        }
        let failed = std::mem::take(&mut entry.failed_now);
        if entry.msg.envelope.sender.is_empty() {
            tracing::info!(
                id = %entry.msg.envelope.id,
                "undeliverable message had the null sender: no DSN is sent"
            );
            return None;
        }
        Some(Notice {
            reporting_mta: self.config.hostname.clone(),
            original: entry.msg.clone(),
            failed: failed
                .into_iter()
                .map(|f| {
                    let address = entry
                        .state
                        .recipients
                        .get(f.index)
                        .map(|r| r.address.clone())
                        .unwrap_or_default();
                    (address, f.reason, f.remote)
                })
                .collect(),
        })
    }
}

mod gauges;
