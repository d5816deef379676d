//! Remembered logins (like Dovecot's auth cache): after a successful verification the
//! user is kept with a keyed SHA-256 digest of name and password, under a key made at
//! each start, for a configured time and up to a configured number of entries. A
//! login matches only with the same digest and the very same user record: a
//! credentials reload makes new records, so a changed file or hash forgets every
//! entry. Failures are never remembered.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::auth::User;

/// A keyed digest of a name and password.
pub type LoginDigest = [u8; 32];

struct Entry {
    digest: LoginDigest,
    user: Arc<User>,
    expires: Instant,
}

/// Verified logins by user name.
pub struct LoginCache {
    key: [u8; 32],
    ttl: Duration,
    max: usize,
    entries: Mutex<HashMap<String, Entry>>,
}

impl LoginCache {
    /// A cache keeping logins for `ttl`, at most `max` of them. Without randomness
    /// for its key it stays off (every login is verified).
    pub fn new(ttl: Duration, max: usize) -> Self {
        let mut key = [0u8; 32];
        let (ttl, max) = match getrandom::fill(&mut key) {
            Ok(()) => (ttl, max),
            Err(e) => {
                tracing::warn!(error = %e, "no randomness for the login cache's key; it stays off");
                (Duration::ZERO, 0)
            }
        };
        Self {
            key,
            ttl,
            max,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn enabled(&self) -> bool {
        !self.ttl.is_zero() && self.max > 0
    }

    /// The digest of a login under this process's key (lengths included, so no two
    /// different logins share an input).
    pub fn digest(&self, name: &str, password: &str) -> LoginDigest {
        let mut h = Sha256::new();
        h.update(self.key);
        h.update((name.len() as u64).to_be_bytes());
        h.update(name.as_bytes());
        h.update((password.len() as u64).to_be_bytes());
        h.update(password.as_bytes());
        h.finalize().into()
    }

    /// Whether `name` logged in with this digest recently, as this very `user`.
    pub fn hit(&self, name: &str, digest: &LoginDigest, user: &Arc<User>) -> bool {
        if !self.enabled() {
            return false;
        }
        let Ok(mut entries) = self.entries.lock() else {
            return false;
        };
        let Some(e) = entries.get(name) else {
            return false;
        };
        let fresh = e.expires > Instant::now() && Arc::ptr_eq(&e.user, user);
        if !fresh {
            entries.remove(name);
            return false;
        }
        bool::from(e.digest.ct_eq(digest))
    }

    /// Remembers a verified login.
    pub fn insert(&self, name: &str, digest: LoginDigest, user: &Arc<User>) {
        if !self.enabled() {
            return;
        }
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        let now = Instant::now();
        if entries.len() >= self.max && !entries.contains_key(name) {
            entries.retain(|_, e| e.expires > now);
            if entries.len() >= self.max
                && let Some(victim) = entries
                    .iter()
                    .min_by_key(|(_, e)| e.expires)
                    .map(|(n, _)| n.clone())
            {
                entries.remove(&victim);
            }
        }
        entries.insert(
            name.to_owned(),
            Entry {
                digest,
                user: user.clone(),
                expires: now + self.ttl,
            },
        );
    }

    /// Entries held (for tests and metrics).
    pub fn len(&self) -> usize {
        self.entries.lock().map_or(0, |e| e.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Credentials;

    fn users(text: &str) -> Credentials {
        Credentials::parse(text, std::path::Path::new("creds")).unwrap()
    }

    const LINE: &str = "app:$2b$04$abcdefghijklmnopqrstuuN9yc6dmHjgcKzsDNp8.YpmnRAQ3w4jq:*\n";

    #[test]
    fn hit_miss_expiry_and_reload() {
        let cache = LoginCache::new(Duration::from_millis(200), 10);
        let creds = users(LINE);
        let app = creds.user("app").unwrap();
        let right = cache.digest("app", "pw");
        assert!(!cache.hit("app", &right, &app), "nothing before a success");
        cache.insert("app", right, &app);
        assert!(cache.hit("app", &right, &app));
        // Another password is a miss (and the digest does not hold it in the clear).
        let wrong = cache.digest("app", "pw2");
        assert_ne!(wrong, right);
        assert!(!cache.hit("app", &wrong, &app));
        assert!(!right.windows(2).any(|w| w == b"pw"));
        // A reload makes a new user record: the entry no longer counts.
        let reloaded = users(LINE);
        assert!(!cache.hit("app", &right, &reloaded.user("app").unwrap()));
        // Expiry.
        cache.insert("app", right, &app);
        std::thread::sleep(Duration::from_millis(250));
        assert!(!cache.hit("app", &right, &app));
    }

    #[test]
    fn digests_are_keyed_per_cache_and_unambiguous() {
        let (a, b) = (
            LoginCache::new(Duration::from_secs(1), 1),
            LoginCache::new(Duration::from_secs(1), 1),
        );
        assert_ne!(a.digest("u", "p"), b.digest("u", "p"));
        assert_ne!(a.digest("ab", "c"), a.digest("a", "bc"));
    }

    #[test]
    fn bounded_in_size_and_off_when_asked() {
        let cache = LoginCache::new(Duration::from_secs(60), 2);
        let text: String = (0..3)
            .map(|i| LINE.replace("app", &format!("u{i}")))
            .collect();
        let creds = users(&text);
        for i in 0..3 {
            let name = format!("u{i}");
            cache.insert(
                &name,
                cache.digest(&name, "pw"),
                &creds.user(&name).unwrap(),
            );
        }
        assert_eq!(cache.len(), 2);
        let off = LoginCache::new(Duration::ZERO, 10);
        let u = creds.user("u0").unwrap();
        off.insert("u0", off.digest("u0", "pw"), &u);
        assert!(off.is_empty());
        assert!(!off.hit("u0", &off.digest("u0", "pw"), &u));
    }
}
