//! Bounded password verification: at most `slots` hash verifications at once on the
//! blocking pool, at most one at a time per client (an IPv4 address or an IPv6 /64),
//! at most `waiting` logins queued (beyond that: [`Busy`]), and one verification for
//! any number of concurrent logins with the same name and password (single flight),
//! which all get its answer.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{Semaphore, watch};

use super::cache::LoginDigest;

/// Too many logins wait for verification: try again later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many logins are being verified")]
pub struct Busy;

/// The verification bound.
pub struct Limiter {
    slots: Arc<Semaphore>,
    max_waiting: usize,
    waiting: AtomicUsize,
    /// Verifications in flight by login digest; later arrivals watch for the answer.
    in_flight: Mutex<HashMap<LoginDigest, watch::Receiver<Option<bool>>>>,
    /// One verification at a time per client; entries live while someone holds them.
    clients: Mutex<HashMap<IpAddr, Arc<Semaphore>>>,
}

/// The client a verification is counted against: the address, or for IPv6 its /64
/// (one host usually has a whole /64).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut o = v6.octets();
                o[8..].fill(0);
                IpAddr::V6(o.into())
            }
        },
        v4 => v4,
    }
}

/// Counts a waiting login while alive.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Limiter {
    pub fn new(slots: usize, max_waiting: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(slots.max(1))),
            max_waiting,
            waiting: AtomicUsize::new(0),
            in_flight: Mutex::new(HashMap::new()),
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// The client's own one-at-a-time gate.
    fn client_gate(&self, client: IpAddr) -> Result<Arc<Semaphore>, Busy> {
        let mut clients = self.clients.lock().map_err(|_| Busy)?;
        // Forget gates nobody holds (the map's own reference is the only one).
        if clients.len() > 1024 {
            clients.retain(|_, g| Arc::strong_count(g) > 1);
        }
        Ok(clients
            .entry(client_key(client))
            .or_insert_with(|| Arc::new(Semaphore::new(1)))
            .clone())
    }

    /// Runs `verify` (blocking, slow) within the bounds; logins with the same digest
    /// that arrive while it runs share its answer.
    pub async fn run<F>(&self, client: IpAddr, digest: LoginDigest, verify: F) -> Result<bool, Busy>
    where
        F: FnOnce() -> bool + Send + 'static,
    {
        // Join a verification of this login in flight, or list ours, in one step:
        // two logins must never both find none and both verify.
        let (tx, joined) = {
            let mut m = self.in_flight.lock().map_err(|_| Busy)?;
            match m.get(&digest) {
                Some(rx) => (None, Some(rx.clone())),
                None => {
                    let (tx, rx) = watch::channel(None);
                    m.insert(digest, rx);
                    (Some(tx), None)
                }
            }
        };
        if let Some(mut rx) = joined {
            return match rx.wait_for(Option::is_some).await {
                Ok(answer) => Ok(answer.unwrap_or(false)),
                // The verifying login went away before it had an answer.
                Err(_) => Err(Busy),
            };
        }
        let _flight = Flight {
            map: &self.in_flight,
            digest,
        };
        let Some(tx) = tx else { return Err(Busy) };
        if self.waiting.fetch_add(1, Ordering::Relaxed) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            return Err(Busy);
        }
        let wait = Waiting(&self.waiting);
        let gate = self.client_gate(client)?;
        let mine = gate.acquire_owned().await.map_err(|_| Busy)?;
        let permit = self.slots.clone().acquire_owned().await.map_err(|_| Busy)?;
        drop(wait);
        let answer = tokio::task::spawn_blocking(move || {
            let ok = verify();
            drop((permit, mine));
            ok
        })
        .await
        .unwrap_or(false);
        let _ = tx.send(Some(answer));
        Ok(answer)
    }
}

/// A verification in flight, unlisted when it ends (also when its session is dropped
/// while waiting, so a later login never waits on a verification nobody runs).
struct Flight<'a> {
    map: &'a Mutex<HashMap<LoginDigest, watch::Receiver<Option<bool>>>>,
    digest: LoginDigest,
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        if let Ok(mut m) = self.map.lock() {
            m.remove(&self.digest);
        }
    }
}

#[cfg(test)]
mod tests;
