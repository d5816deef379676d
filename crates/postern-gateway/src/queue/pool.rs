//! Outbound connections by destination, counted against the global and the
//! per-destination limits, with the open connections that wait for work (kept after
//! their run, like Postfix's connection cache). Pure bookkeeping: a waiting
//! connection is represented by whatever `W` the caller uses to hand it work, and
//! dropping a `W` is how a connection is told to close.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

/// A connection with nothing to send, waiting for more messages for its destination
/// until `deadline`.
pub struct Idle<W> {
    pub deadline: Instant,
    /// Hands it more work.
    pub more: W,
    /// Messages it may still take.
    pub room: usize,
}

/// Connections (open or opening) by destination, idle ones included.
pub struct Pool<W> {
    active: HashMap<String, usize>,
    total: usize,
    /// Open connections waiting for work, oldest first, by destination.
    idle: HashMap<String, VecDeque<Idle<W>>>,
}

impl<W> Default for Pool<W> {
    fn default() -> Self {
        Self {
            active: HashMap::new(),
            total: 0,
            idle: HashMap::new(),
        }
    }
}

impl<W> Pool<W> {
    /// Connections open or opening, in total.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Connections to `dest`.
    pub fn active(&self, dest: &str) -> usize {
        self.active.get(dest).copied().unwrap_or(0)
    }

    /// Connections waiting for work, in total.
    pub fn idle_count(&self) -> usize {
        self.idle.values().map(VecDeque::len).sum()
    }

    /// The earliest deadline of a waiting connection.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.idle
            .values()
            .filter_map(|q| q.front().map(|i| i.deadline))
            .min()
    }

    /// Counts a new connection to `dest`.
    pub fn open(&mut self, dest: &str) {
        *self.active.entry(dest.to_owned()).or_insert(0) += 1;
        self.total += 1;
    }

    /// Counts a connection to `dest` closed.
    pub fn closed(&mut self, dest: &str) {
        if let Some(n) = self.active.get_mut(dest) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.active.remove(dest);
            }
        }
        self.total = self.total.saturating_sub(1);
    }

    /// A connection to `dest` waits for work.
    pub fn park(&mut self, dest: String, idle: Idle<W>) {
        self.idle.entry(dest).or_default().push_back(idle);
    }

    /// The most recently parked connection to `dest` (so that surplus ones reach
    /// their deadline), taken out of the waiting list; still counted as open.
    pub fn take_idle(&mut self, dest: &str) -> Option<Idle<W>> {
        let q = self.idle.get_mut(dest)?;
        let i = q.pop_back();
        if q.is_empty() {
            self.idle.remove(dest);
        }
        i
    }

    /// Closes (drops) connections past their deadline.
    pub fn close_expired(&mut self, now: Instant) {
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

    /// Closes the longest-waiting connection of a destination other than `dest`, to
    /// make room under the global limit; false when there is none.
    pub fn close_idle_elsewhere(&mut self, dest: &str) -> bool {
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
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn idle(at: Instant, secs: u64, tag: u32) -> Idle<u32> {
        Idle {
            deadline: at + Duration::from_secs(secs),
            more: tag,
            room: 10,
        }
    }

    #[test]
    fn counts_open_and_closed_per_destination() {
        let mut p = Pool::<u32>::default();
        p.open("a.test");
        p.open("a.test");
        p.open("b.test");
        assert_eq!(
            (p.total(), p.active("a.test"), p.active("b.test")),
            (3, 2, 1)
        );
        p.closed("a.test");
        p.closed("b.test");
        assert_eq!(
            (p.total(), p.active("a.test"), p.active("b.test")),
            (1, 1, 0)
        );
    }

    #[test]
    fn the_newest_waiting_connection_gets_work_and_old_ones_expire() {
        let now = Instant::now();
        let mut p = Pool::default();
        for tag in 0..3 {
            p.open("a.test");
            p.park("a.test".into(), idle(now, 2 + u64::from(tag), tag));
        }
        assert_eq!(p.idle_count(), 3);
        assert_eq!(p.next_deadline(), Some(now + Duration::from_secs(2)));
        let taken = p.take_idle("a.test").unwrap();
        assert_eq!(taken.more, 2, "the most recently parked one");
        assert_eq!(p.total(), 3, "a connection taken to work is still open");
        p.close_expired(now + Duration::from_secs(3));
        assert_eq!(p.idle_count(), 0);
        assert_eq!(p.total(), 1, "the expired two are closed");
        assert!(p.take_idle("a.test").is_none());
    }

    #[test]
    fn room_is_made_by_closing_the_longest_idle_elsewhere() {
        let now = Instant::now();
        let mut p = Pool::default();
        p.open("a.test");
        p.park("a.test".into(), idle(now, 5, 1));
        p.open("b.test");
        p.park("b.test".into(), idle(now, 1, 2));
        // Never the destination that needs the room.
        assert!(p.close_idle_elsewhere("b.test"));
        assert_eq!((p.active("a.test"), p.active("b.test")), (0, 1));
        assert!(!p.close_idle_elsewhere("b.test"));
        assert!(p.close_idle_elsewhere("c.test"));
        assert_eq!(p.total(), 0);
    }
}
