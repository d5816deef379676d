//! The queue: every accepted message, scheduled for delivery per destination
//! (recipient domain, or the smarthost), with a global and a per-destination
//! connection limit, several messages per connection, retries with exponential
//! backoff and jitter, a maximum lifetime, and DSNs for what fails.
//!
//! One task (the scheduler) owns all queue state; delivery runs in worker tasks that
//! report back over the same channel, so there are no locks around the queue. A
//! message leaves the spool only when every recipient is delivered or bounced.

pub mod dsn;
pub mod state;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use postern_config::{DeliveryMode, GatewayConfig, SmarthostTls, TlsPolicy};
use tokio::sync::{mpsc, oneshot};

use crate::metrics::Metrics;
use crate::outbound::deliver::{
    Connection, Deliverer, Job, Outcome, RcptResult, Route, RunResult, TlsMode,
};
use crate::outbound::route::{Resolution, Resolver};
use crate::spool::{Envelope, Spool, SpooledMessage};
use state::{DeliveryState, RcptStatus};

/// Errors starting the queue.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue state directory {path}: {source}")]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Resolver(#[from] crate::outbound::route::ResolverError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("smarthost credentials file {path}: {what}")]
    SmarthostCredentials { path: PathBuf, what: String },
}

enum Event {
    Add(SpooledMessage),
    Done {
        dest: String,
        results: Vec<(String, Vec<RcptResult>)>,
        /// The worker keeps its connection open and waits here for more messages
        /// for the same destination (an empty batch: close it), taking up to the
        /// given number.
        idle: Option<(oneshot::Sender<Vec<Job>>, usize)>,
    },
    Flush,
    /// Every recipient is final without a delivery run (expired): finish it.
    Finish(String),
}

/// Hands messages to the scheduler.
#[derive(Clone)]
pub struct QueueHandle {
    tx: mpsc::UnboundedSender<Event>,
}

impl QueueHandle {
    /// A newly accepted (durable) message.
    pub fn add(&self, msg: SpooledMessage) {
        let _ = self.tx.send(Event::Add(msg));
    }

    /// Try every deferred message now, and forget messages whose files an
    /// administrator removed (`postern-gateway queue flush|delete`).
    pub fn flush(&self) {
        let _ = self.tx.send(Event::Flush);
    }
}

/// What delivery needs, shared by the workers.
struct Outbound {
    mode: DeliveryMode,
    resolver: Resolver,
    deliverer: Deliverer,
    config: Arc<GatewayConfig>,
    smarthost_auth: Option<(String, String)>,
}

impl Outbound {
    fn tls_for(&self, dest: &str) -> TlsMode {
        let t = &self.config.delivery.tls;
        let verify = t.verify_certificates;
        if t.policy == TlsPolicy::Require
            || t.require_domains
                .iter()
                .any(|d| d.eq_ignore_ascii_case(dest))
        {
            TlsMode::Require { verify }
        } else {
            TlsMode::Opportunistic { verify }
        }
    }

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
        let (results, kept) = self.route_and_deliver(dest, jobs).await;
        done.extend(results);
        (done, kept)
    }

    async fn route_and_deliver(&self, dest: &str, jobs: Vec<Job>) -> RunResult {
        let route = match self.mode {
            DeliveryMode::Smarthost => match &self.config.delivery.smarthost {
                Some(sh) => match self.resolver.host(&sh.host).await {
                    Ok(hop) => Ok(Route {
                        hops: vec![hop],
                        tls: match sh.tls {
                            SmarthostTls::Starttls => TlsMode::Require {
                                verify: sh.verify_certificate,
                            },
                            SmarthostTls::Implicit => TlsMode::Implicit {
                                verify: sh.verify_certificate,
                            },
                            SmarthostTls::None => TlsMode::None,
                        },
                        auth: self.smarthost_auth.clone(),
                    }),
                    Err(why) => Err((Outcome::Deferred, "4.4.3", why)),
                },
                None => Err((
                    Outcome::Deferred,
                    "4.3.5",
                    "no smarthost configured".to_owned(),
                )),
            },
            _ => match self.resolver.mx(dest).await {
                Resolution::Hops(hops) => Ok(Route {
                    hops,
                    tls: self.tls_for(dest),
                    auth: None,
                }),
                Resolution::NullMx => Err((
                    Outcome::Bounced,
                    "5.1.10",
                    format!("domain {dest} does not accept mail (null MX, RFC 7505)"),
                )),
                Resolution::NoSuchDomain(why) => Err((Outcome::Bounced, "5.1.2", why)),
                Resolution::NoAddress(why) => Err((Outcome::Bounced, "5.4.4", why)),
                Resolution::TempFail(why) => Err((Outcome::Deferred, "4.4.3", why)),
            },
        };
        match route {
            Ok(route) => {
                self.deliverer
                    .run(&route, jobs, self.deliverer.metrics.destination(dest))
                    .await
            }
            Err((outcome, status, why)) => (
                jobs.into_iter()
                    .map(|j| {
                        let results = j
                            .rcpts
                            .iter()
                            .map(|&(index, _)| RcptResult {
                                index,
                                outcome,
                                status: status.to_owned(),
                                detail: why.clone(),
                                remote: None,
                                tls: crate::outbound::deliver::TlsUsed::None,
                            })
                            .collect();
                        (j.id, results)
                    })
                    .collect(),
                None,
            ),
        }
    }
}

struct Entry {
    msg: SpooledMessage,
    state: DeliveryState,
    /// Destinations of this attempt not yet reported back.
    outstanding: usize,
    /// Recipients that failed for good in this attempt, for the DSN.
    failed_now: Vec<(usize, String, String, Option<String>)>,
}

/// A worker holding an open connection with nothing to send, waiting for more
/// messages for its destination until `deadline`.
struct Idle {
    deadline: Instant,
    more: oneshot::Sender<Vec<Job>>,
    /// Messages it may still take.
    room: usize,
}

struct Scheduler {
    config: Arc<GatewayConfig>,
    spool: Spool,
    state_dir: PathBuf,
    outbound: Option<Arc<Outbound>>,
    tx: mpsc::UnboundedSender<Event>,
    entries: HashMap<String, Entry>,
    ready: HashMap<String, VecDeque<String>>,
    timers: BinaryHeap<Reverse<(Instant, String)>>,
    /// Connections (open or opening) by destination, idle ones included.
    active: HashMap<String, usize>,
    total_active: usize,
    /// Open connections waiting for work, oldest first, by destination.
    idle: HashMap<String, VecDeque<Idle>>,
    metrics: Arc<Metrics>,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// "2", "4" or "5" from an enhanced status like "4.4.1".
fn status_class(status: &str) -> &'static str {
    match status.as_bytes().first() {
        Some(b'2') => "2",
        Some(b'4') => "4",
        _ => "5",
    }
}

fn random_unit() -> f64 {
    let mut b = [0u8; 4];
    let _ = getrandom::fill(&mut b);
    f64::from(u32::from_le_bytes(b)) / (f64::from(u32::MAX) + 1.0)
}

/// Where a recipient's mail goes: its domain (MX) or the smarthost.
fn destination(mode: DeliveryMode, rcpt: &str) -> String {
    match mode {
        DeliveryMode::Smarthost => "smarthost".to_owned(),
        _ => rcpt
            .rsplit_once('@')
            .map(|(_, d)| d.to_lowercase())
            .unwrap_or_default(),
    }
}

/// Starts the scheduler with the messages found in the spool.
pub fn start(
    config: Arc<GatewayConfig>,
    spool: Spool,
    recovered: Vec<SpooledMessage>,
    metrics: Arc<Metrics>,
) -> Result<QueueHandle, QueueError> {
    let state_dir = spool.root().join("state");
    crate::spool::private_dir(&state_dir).map_err(|source| QueueError::StateDir {
        path: state_dir.clone(),
        source,
    })?;
    let d = &config.delivery;
    let outbound = match d.mode {
        DeliveryMode::Hold => None,
        mode => {
            let helo = if d.helo_name.is_empty() {
                config.hostname.clone()
            } else {
                d.helo_name.clone()
            };
            let ca = d
                .tls
                .ca_file
                .as_deref()
                .or(d.smarthost.as_ref().and_then(|s| s.ca_file.as_deref()));
            let deliverer = Deliverer::new(
                d,
                helo,
                crate::outbound::tls::client_config(true, ca)?,
                crate::outbound::tls::client_config(false, None)?,
                spool.messages_dir().to_owned(),
                metrics.clone(),
            );
            let port = match (&d.smarthost, mode) {
                (Some(sh), DeliveryMode::Smarthost) => sh.port,
                _ => d.mx_port,
            };
            let smarthost_auth = match d
                .smarthost
                .as_ref()
                .and_then(|s| s.credentials_file.as_ref())
            {
                Some(path) if mode == DeliveryMode::Smarthost => {
                    Some(read_smarthost_credentials(path)?)
                }
                _ => None,
            };
            Some(Arc::new(Outbound {
                mode,
                resolver: Resolver::new(&d.dns, port, metrics.clone())?,
                deliverer,
                config: config.clone(),
                smarthost_auth,
            }))
        }
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let mut scheduler = Scheduler {
        config,
        spool,
        state_dir,
        outbound,
        tx: tx.clone(),
        entries: HashMap::new(),
        ready: HashMap::new(),
        timers: BinaryHeap::new(),
        active: HashMap::new(),
        total_active: 0,
        idle: HashMap::new(),
        metrics,
    };
    scheduler.remove_orphan_states(&recovered);
    for msg in recovered {
        scheduler.add(msg, true);
    }
    tokio::spawn(scheduler.run(rx));
    Ok(QueueHandle { tx })
}

fn read_smarthost_credentials(path: &std::path::Path) -> Result<(String, String), QueueError> {
    let err = |what: &str| QueueError::SmarthostCredentials {
        path: path.to_owned(),
        what: what.to_owned(),
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(&e.to_string()))?;
    let login = postern_config::credentials::SmarthostLogin::parse(&text)
        .map_err(|e| err(&e.to_string()))?;
    Ok(login.into_parts())
}

impl Scheduler {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Event>) {
        // Messages recovered from the spool are ready before any event arrives.
        self.release_due();
        self.dispatch();
        let mut gauges = tokio::time::interval(Duration::from_secs(5));
        loop {
            let next_idle = self
                .idle
                .values()
                .filter_map(|q| q.front().map(|i| i.deadline))
                .min();
            let next_timer = self
                .timers
                .peek()
                .map(|Reverse((t, _))| *t)
                .into_iter()
                .chain(next_idle)
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
                Some(Event::Add(msg)) => self.add(msg, false),
                Some(Event::Done {
                    dest,
                    results,
                    idle,
                }) => {
                    self.done(&dest, results).await;
                    self.park(dest, idle);
                }
                Some(Event::Flush) => self.flush(),
                Some(Event::Finish(id)) => self.finish_attempt(&id).await,
                None => {}
            }
            self.release_due();
            self.close_expired_idle();
            self.dispatch();
        }
    }

    /// A worker reported back: keep its connection for the destination's next
    /// messages, or count it closed.
    fn park(&mut self, dest: String, idle: Option<(oneshot::Sender<Vec<Job>>, usize)>) {
        let wait = self.config.delivery.limits.idle_connection_time;
        match idle {
            Some((more, room)) if room > 0 && !wait.is_zero() => {
                self.idle.entry(dest).or_default().push_back(Idle {
                    deadline: Instant::now() + wait,
                    more,
                    room,
                });
            }
            // Dropping `more` tells the worker to close.
            _ => self.closed(&dest),
        }
    }

    fn closed(&mut self, dest: &str) {
        if let Some(n) = self.active.get_mut(dest) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.active.remove(dest);
            }
        }
        self.total_active = self.total_active.saturating_sub(1);
    }

    /// Closes connections idle for longer than `idle_connection_time`.
    fn close_expired_idle(&mut self) {
        let now = Instant::now();
        let mut closed = Vec::new();
        for (dest, queue) in &mut self.idle {
            while queue.front().is_some_and(|i| i.deadline <= now) {
                queue.pop_front();
                closed.push(dest.clone());
            }
        }
        self.idle.retain(|_, q| !q.is_empty());
        for dest in closed {
            self.closed(&dest);
        }
    }

    /// Closes the longest-idle connection of a destination other than `dest`, to make
    /// room under the global limit; false when there is none.
    fn close_idle_elsewhere(&mut self, dest: &str) -> bool {
        let victim = self
            .idle
            .iter()
            .filter(|(d, q)| d.as_str() != dest && !q.is_empty())
            .min_by_key(|(_, q)| q.front().map(|i| i.deadline))
            .map(|(d, _)| d.clone());
        let Some(victim) = victim else {
            return false;
        };
        if let Some(q) = self.idle.get_mut(&victim) {
            q.pop_front();
            if q.is_empty() {
                self.idle.remove(&victim);
            }
        }
        self.closed(&victim);
        true
    }

    /// Queue depth and age for the metrics; a full pass, so only every few seconds.
    fn update_gauges(&self) {
        let hold = self.outbound.is_none();
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
        let idle: usize = self.idle.values().map(VecDeque::len).sum();
        let gauge = |state: &str, n: usize| {
            self.metrics
                .outbound_open
                .with_label_values(&[state])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        };
        gauge("busy", self.total_active.saturating_sub(idle));
        gauge("idle", idle);
    }

    fn remove_orphan_states(&self, recovered: &[SpooledMessage]) {
        let known: std::collections::HashSet<&str> =
            recovered.iter().map(|m| m.envelope.id.as_str()).collect();
        if let Ok(dir) = std::fs::read_dir(&self.state_dir) {
            for e in dir.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !known.contains(name.as_str()) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }

    /// Queues a message: one `recovered` from the spool at start resumes its recorded
    /// delivery state; a new one has none yet (nothing to read).
    fn add(&mut self, msg: SpooledMessage, recovered: bool) {
        let id = msg.envelope.id.clone();
        let state = recovered
            .then(|| state::load(&self.state_dir, &id))
            .flatten()
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
    fn flush(&mut self) {
        let gone: Vec<String> = self
            .entries
            .keys()
            .filter(|id| !self.spool.messages_dir().join(id).exists())
            .cloned()
            .collect();
        for id in gone {
            tracing::info!(id = %id, "removed from the queue by administrator");
            self.entries.remove(&id);
            state::remove(&self.state_dir, &id);
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
    /// recipients for (or expires it).
    fn enqueue(&mut self, id: &str) {
        let lifetime = self.config.delivery.retry.max_lifetime;
        let mode = self.config.delivery.mode;
        let Some(entry) = self.entries.get_mut(id) else {
            return;
        };
        if entry.outstanding > 0 {
            return;
        }
        let age = now_unix().saturating_sub(entry.msg.envelope.received_at);
        if entry.state.attempts > 0 && age >= lifetime.as_secs() {
            let pending: Vec<usize> = entry.state.pending().collect();
            for i in pending {
                let r = &mut entry.state.recipients[i];
                let why = format!(
                    "delivery time expired after {}; last result: {}",
                    humanize(Duration::from_secs(age)),
                    r.last_result.as_deref().unwrap_or("none")
                );
                r.status = RcptStatus::Bounced;
                let label = self.metrics.destination(&destination(mode, &r.address));
                self.metrics
                    .delivery_attempts
                    .with_label_values(&["bounced", "4", label])
                    .inc();
                tracing::info!(id, to = %r.address, status = "expired", dsn = "4.4.7", detail = %why, "delivery");
                entry
                    .failed_now
                    .push((i, "4.4.7".into(), why, r.remote.clone()));
            }
            // Finishing needs async work (the DSN): the scheduler does it next.
            let _ = self.tx.send(Event::Finish(id.to_owned()));
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
        let Some(outbound) = self.outbound.clone() else {
            return;
        };
        let limits = self.config.delivery.limits.clone();
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
            let dest = dest.clone();
            while self.ready.get(&dest).is_some_and(|q| !q.is_empty()) {
                let Some(idle) = self.idle.get_mut(&dest).and_then(VecDeque::pop_back) else {
                    break;
                };
                let jobs = self.take_jobs(&dest, idle.room, outbound.mode);
                if jobs.is_empty() {
                    // Only messages removed meanwhile were queued.
                    self.idle.entry(dest.clone()).or_default().push_back(idle);
                    continue;
                }
                if let Err(jobs) = idle.more.send(jobs) {
                    // The worker is gone: its messages wait for the next connection.
                    if let Some(q) = self.ready.get_mut(&dest) {
                        for job in jobs.into_iter().rev() {
                            q.push_front(job.id);
                        }
                    }
                    self.closed(&dest);
                }
            }
            if self.idle.get(&dest).is_some_and(VecDeque::is_empty) {
                self.idle.remove(&dest);
            }
        }
        for dest in dests {
            while self.ready.get(&dest).is_some_and(|q| !q.is_empty()) {
                let active = self.active.get(&dest).copied().unwrap_or(0);
                if active >= limits.max_connections_per_destination {
                    break;
                }
                if self.total_active >= limits.max_connections && !self.close_idle_elsewhere(&dest)
                {
                    break;
                }
                let jobs = self.take_jobs(&dest, limits.max_messages_per_connection, outbound.mode);
                if jobs.is_empty() {
                    continue;
                }
                *self.active.entry(dest.clone()).or_insert(0) += 1;
                self.total_active += 1;
                self.spawn_worker(&outbound, dest.clone(), jobs);
            }
        }
        self.ready.retain(|_, q| !q.is_empty());
    }

    /// Up to `n` messages from the destination's ready queue, with their recipients
    /// there.
    fn take_jobs(&mut self, dest: &str, n: usize, mode: DeliveryMode) -> Vec<Job> {
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

    /// A worker: delivers its messages, then keeps the connection open for more of
    /// the destination's messages while the scheduler has any for it, within the
    /// per-connection message count and age limits.
    fn spawn_worker(&self, outbound: &Arc<Outbound>, dest: String, jobs: Vec<Job>) {
        let limits = &self.config.delivery.limits;
        let (max_messages, max_age) = (
            limits.max_messages_per_connection,
            limits.max_connection_age,
        );
        let (tx, ob) = (self.tx.clone(), outbound.clone());
        tokio::spawn(async move {
            let mut jobs = jobs;
            let mut conn = None;
            loop {
                let (results, kept) = ob.deliver(&dest, jobs, conn.take()).await;
                let room = kept.as_ref().map_or(0, |c: &Connection| {
                    if c.age() < max_age {
                        max_messages.saturating_sub(c.sent())
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
                        ob.deliverer.close(c).await;
                        return;
                    }
                }
            }
        });
    }

    async fn done(&mut self, dest: &str, results: Vec<(String, Vec<RcptResult>)>) {
        for (id, rcpts) in results {
            let Some(entry) = self.entries.get_mut(&id) else {
                continue;
            };
            let delay = now_unix().saturating_sub(entry.msg.envelope.received_at);
            for r in rcpts {
                let Some(rs) = entry.state.recipients.get_mut(r.index) else {
                    continue;
                };
                rs.last_result = Some(r.detail.clone());
                rs.remote = r.remote.clone();
                let label = self.metrics.destination(dest);
                let result = match r.outcome {
                    Outcome::Delivered => "delivered",
                    Outcome::Deferred => "deferred",
                    Outcome::Bounced => "bounced",
                };
                // The class of the enhanced status: a bounce may be 4.4.7 (expired).
                let class = status_class(&r.status);
                self.metrics
                    .delivery_attempts
                    .with_label_values(&[result, class, label])
                    .inc();
                if r.outcome == Outcome::Delivered {
                    let env = &entry.msg.envelope;
                    let accepted_ms = if env.received_at_ms > 0 {
                        env.received_at_ms
                    } else {
                        env.received_at * 1000
                    };
                    let latency = now_ms().saturating_sub(accepted_ms) as f64 / 1000.0;
                    self.metrics
                        .delivery_latency
                        .with_label_values(&[label])
                        .observe(latency);
                }
                let status = match r.outcome {
                    Outcome::Delivered => {
                        rs.status = RcptStatus::Delivered;
                        "sent"
                    }
                    Outcome::Bounced => {
                        rs.status = RcptStatus::Bounced;
                        entry.failed_now.push((
                            r.index,
                            r.status.clone(),
                            r.detail.clone(),
                            r.remote.clone(),
                        ));
                        "bounced"
                    }
                    Outcome::Deferred => "deferred",
                };
                tracing::info!(
                    id = %id,
                    from = %format!("<{}>", entry.msg.envelope.sender),
                    to = %format!("<{}>", rs.address),
                    relay = r.remote.as_deref().unwrap_or("none"),
                    delay,
                    dsn = %r.status,
                    tls = ?r.tls,
                    status,
                    detail = %r.detail,
                    "delivery"
                );
            }
            entry.outstanding = entry.outstanding.saturating_sub(1);
            if entry.outstanding == 0 {
                self.finish_attempt(&id).await;
            }
        }
    }

    /// After every destination of an attempt reported: DSN for new failures, then
    /// remove the message or schedule its next attempt.
    async fn finish_attempt(&mut self, id: &str) {
        let Some(mut entry) = self.entries.remove(id) else {
            return;
        };
        if !entry.failed_now.is_empty() {
            let failed = std::mem::take(&mut entry.failed_now);
            if entry.msg.envelope.sender.is_empty() {
                tracing::info!(
                    id,
                    "undeliverable message had the null sender: no DSN is sent"
                );
            } else {
                self.send_dsn(&entry, &failed).await;
            }
        }
        if entry.state.is_final() {
            self.spool.remove(id);
            // A state file exists only once an attempt failed.
            if entry.state.attempts > 0 {
                state::remove(&self.state_dir, id);
            }
            tracing::info!(id, "removed");
            return;
        }
        entry.state.attempts += 1;
        let delay = state::retry_delay(
            &self.config.delivery.retry,
            entry.state.attempts,
            random_unit(),
        );
        entry.state.next_attempt = now_unix() + delay.as_secs();
        if let Err(e) = state::store(&self.state_dir, id, &entry.state) {
            tracing::warn!(id, error = %e, "cannot record delivery state; it will be retried as new after a restart");
        }
        self.timers
            .push(Reverse((Instant::now() + delay, id.to_owned())));
        self.entries.insert(id.to_owned(), entry);
    }

    async fn send_dsn(
        &mut self,
        entry: &Entry,
        failed: &[(usize, String, String, Option<String>)],
    ) {
        let env = &entry.msg.envelope;
        let mut head = Vec::new();
        if let Ok(f) = std::fs::File::open(self.spool.messages_dir().join(&env.id)) {
            let _ = f.take(entry.msg.size.min(64 * 1024)).read_to_end(&mut head);
        }
        let headers = dsn::header_section(&head).to_vec();
        let mut writer = self.spool.create();
        let unique = writer.id().to_owned();
        let body = dsn::render(&dsn::Report {
            reporting_mta: &self.config.hostname,
            original_id: &env.id,
            original_sender: &env.sender,
            arrival: env.received_at,
            failed: failed
                .iter()
                .map(|(i, status, detail, remote)| dsn::FailedRecipient {
                    address: entry
                        .state
                        .recipients
                        .get(*i)
                        .map(|r| r.address.as_str())
                        .unwrap_or(""),
                    status: status.clone(),
                    diagnostic: detail,
                    remote_mta: remote.as_deref(),
                })
                .collect(),
            original_headers: &headers,
            unique: &unique,
        });
        if let Err(e) = writer.write(&body).await {
            tracing::error!(id = %env.id, error = %e, "cannot write DSN");
            writer.abort().await;
            return;
        }
        let dsn_env = Envelope {
            id: unique.clone(),
            sender: String::new(),
            recipients: vec![env.sender.clone()],
            received_at: now_unix(),
            received_at_ms: now_ms(),
            client_ip: String::new(),
            helo: self.config.hostname.clone(),
            auth_user: None,
            listener: "dsn".into(),
            smtputf8: !env.sender.is_ascii(),
            eight_bit: false,
        };
        match writer.commit(&dsn_env).await {
            Ok(msg) => {
                self.metrics.dsns.inc();
                tracing::info!(id = %env.id, dsn_id = %unique, to = %format!("<{}>", env.sender), "sender non-delivery notification");
                self.add(msg, false);
            }
            Err(e) => tracing::error!(id = %env.id, error = %e, "cannot queue DSN"),
        }
    }
}

fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 86_400 {
        format!("{}d{}h", s / 86_400, (s % 86_400) / 3600)
    } else if s >= 3600 {
        format!("{}h{}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{s}s")
    }
}
