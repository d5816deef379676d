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

use std::net::IpAddr;
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

    /// The user, when `name` and `password` were verified recently: no hashing.
    pub fn cached(&self, name: &str, password: &str) -> Option<Arc<User>> {
        let user = self.store.current().user(name)?;
        let digest = self.cache.digest(name, password);
        self.cache.hit(name, &digest, &user).then_some(user)
    }

    /// Verifies `name` and `password` by their hash, within the bounds (see
    /// [`limiter`]); remembers a success.
    pub async fn verify(
        &self,
        client: IpAddr,
        name: &str,
        password: &str,
    ) -> Result<Checked, Busy> {
        let known = self.store.current().user(name);
        let digest = self.cache.digest(name, password);
        let store = self.store.clone();
        let (user, p) = (known.clone(), password.to_owned());
        let verified = self
            .limiter
            .run(client, digest, move || {
                store.verify_against(user.as_deref(), &p)
            })
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
