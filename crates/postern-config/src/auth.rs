//! `[auth]`: SMTP AUTH credentials and brute-force protection. The credentials file
//! itself is read and written by [`crate::credentials`].

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// SMTP AUTH.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Credentials file: one `name:hash:senders` line per user (see docs/configuration.md).
    /// Without it no user can authenticate and AUTH is not offered.
    pub credentials_file: Option<PathBuf>,
    /// How often the credentials file is checked for changes.
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
    /// Failed AUTH attempts from one client IP, within `failure_window`, after which every
    /// further AUTH reply to that IP is delayed.
    pub delay_after_failures: u32,
    /// Delay added per failure beyond `delay_after_failures`.
    #[serde(with = "humantime_serde")]
    pub failure_delay: Duration,
    /// Failed attempts within `failure_window` after which the client IP gets 421 and is
    /// blocked for `block_duration`.
    pub block_after_failures: u32,
    /// Window over which failures are counted.
    #[serde(with = "humantime_serde")]
    pub failure_window: Duration,
    /// How long a blocked client IP is refused.
    #[serde(with = "humantime_serde")]
    pub block_duration: Duration,
    /// Name the authenticated user in the Received header (off: the user stays private).
    pub received_header_shows_user: bool,
    /// How long a verified login is remembered (a keyed digest of the password, never
    /// the password), so that a repeat login costs no password hash; 0 turns the
    /// cache off. A credentials reload or a changed hash forgets it at once.
    #[serde(with = "humantime_serde")]
    pub cache_ttl: Duration,
    /// Most logins remembered at once.
    pub cache_size: usize,
    /// A failed AUTH is answered no sooner than this after the attempt began (like
    /// Postfix's `smtpd_error_sleep_time`), so unknown users and users with argon2id or
    /// bcrypt hashes cannot be told apart by timing.
    #[serde(with = "humantime_serde")]
    pub failure_reply_time: Duration,
    /// Password hash verifications running at once (each argon2id one holds its memory
    /// cost, 19 MiB by default); 0 means one per CPU.
    pub max_concurrent_verifications: usize,
    /// Logins that may wait for a verification slot; past that AUTH answers
    /// `454 4.7.0` (try again later) instead of queueing without bound.
    pub max_waiting_verifications: usize,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            credentials_file: None,
            reload_interval: Duration::from_secs(5),
            delay_after_failures: 3,
            failure_delay: Duration::from_secs(1),
            block_after_failures: 10,
            failure_window: Duration::from_secs(600),
            block_duration: Duration::from_secs(900),
            received_header_shows_user: false,
            cache_ttl: Duration::from_secs(3600),
            cache_size: 10_000,
            failure_reply_time: Duration::from_secs(1),
            max_concurrent_verifications: 0,
            max_waiting_verifications: 200,
        }
    }
}
