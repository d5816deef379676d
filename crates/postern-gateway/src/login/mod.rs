//! Checking an AUTH login, cheaply and within bounds (guarantee 10):
//!
//! 1. [`cache`]: a login verified recently is answered from memory (a keyed digest of
//!    the password, never the password), so an application that connects for every
//!    message does not pay a password hash each time;
//! 2. [`limiter`]: otherwise the hash verification runs on the blocking pool, at
//!    most a fixed number at once with a bounded queue (past it: "busy", which AUTH
//!    answers with `454 4.7.0`), and concurrent logins with the same name and
//!    password share one verification.
//!
//! The credentials and the hash check themselves are in [`crate::auth`].

pub mod cache;
pub mod limiter;

use std::sync::Arc;

use postern_config::AuthConfig;

use crate::auth::{CredentialStore, User};
use cache::LoginCache;
use limiter::{Busy, Limiter};

/// What a login check found.
#[derive(Debug)]
pub enum Checked {
    /// Name and password are right.
    User(Arc<User>),
    /// Wrong name or password.
    Refused,
}

/// The login checker of a gateway.
pub struct Logins {
    store: Arc<CredentialStore>,
    cache: LoginCache,
    limiter: Limiter,
}

impl Logins {
    pub fn new(store: Arc<CredentialStore>, cfg: &AuthConfig) -> Self {
        let slots = match cfg.max_concurrent_verifications {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };
        Self {
            store,
            cache: LoginCache::new(cfg.cache_ttl, cfg.cache_size),
            limiter: Limiter::new(slots, cfg.max_waiting_verifications),
        }
    }

    /// Checks `name` and `password`: from the cache when it can, otherwise by a
    /// bounded verification.
    pub async fn check(&self, name: &str, password: &str) -> Result<Checked, Busy> {
        let current = self.store.current();
        let known = current.user(name);
        let digest = self.cache.digest(name, password);
        if let Some(user) = &known
            && self.cache.hit(name, &digest, user)
        {
            return Ok(Checked::User(user.clone()));
        }
        let store = self.store.clone();
        let (user, p) = (known.clone(), password.to_owned());
        let verified = self
            .limiter
            .run(digest, move || store.verify_against(user.as_deref(), &p))
            .await?;
        match known {
            Some(user) if verified => {
                self.cache.insert(name, digest, &user);
                Ok(Checked::User(user))
            }
            _ => Ok(Checked::Refused),
        }
    }
}
