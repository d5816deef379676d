//! Per-client rate limits over a sliding minute: connections and messages per IP
//! (Postfix's anvil). Counts are kept per IP in fixed one-second slots, so memory per
//! client is bounded and old entries are swept.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

const SLOTS: usize = 60;
/// Clients tracked before idle ones are swept.
const SWEEP_AT: usize = 10_000;

struct Window {
    /// Events per second of the last minute, indexed by second modulo 60.
    slots: [u32; SLOTS],
    /// The second each slot belongs to.
    stamps: [u64; SLOTS],
    last: u64,
}

/// A limit of `max` events per minute per client IP; 0 means none.
pub struct RateLimit {
    max: u32,
    start: Instant,
    clients: Mutex<HashMap<IpAddr, Window>>,
}

impl RateLimit {
    pub fn new(max_per_minute: u32) -> Self {
        Self {
            max: max_per_minute,
            start: Instant::now(),
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one event for `ip` and says whether it is within the limit.
    pub fn allow(&self, ip: IpAddr) -> bool {
        self.allow_at(ip, self.start.elapsed().as_secs())
    }

    fn allow_at(&self, ip: IpAddr, now: u64) -> bool {
        if self.max == 0 {
            return true;
        }
        let Ok(mut clients) = self.clients.lock() else {
            return true;
        };
        if clients.len() >= SWEEP_AT {
            clients.retain(|_, w| now.saturating_sub(w.last) < SLOTS as u64);
        }
        let w = clients.entry(ip).or_insert(Window {
            slots: [0; SLOTS],
            stamps: [0; SLOTS],
            last: now,
        });
        w.last = now;
        let recent: u32 = (0..SLOTS)
            .filter(|&i| now.saturating_sub(w.stamps[i]) < SLOTS as u64 && w.slots[i] > 0)
            .map(|i| w.slots[i])
            .sum();
        if recent >= self.max {
            return false;
        }
        let i = (now % SLOTS as u64) as usize;
        if w.stamps[i] != now {
            w.stamps[i] = now;
            w.slots[i] = 0;
        }
        w.slots[i] += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_minute_and_recovers() {
        let r = RateLimit::new(3);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(r.allow_at(a, 100) && r.allow_at(a, 110) && r.allow_at(a, 120));
        assert!(!r.allow_at(a, 130), "fourth within a minute");
        assert!(r.allow_at(b, 130), "per client");
        assert!(r.allow_at(a, 161), "the first one left the window");
        assert!(!r.allow_at(a, 162));
        let off = RateLimit::new(0);
        assert!((0..1000).all(|_| off.allow_at(a, 1)));
    }
}
