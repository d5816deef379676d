//! SMTP AUTH credentials and brute-force protection.
//!
//! The credentials file has one user per line, `name:hash:senders`; its format (and
//! password hashing) lives in [`postern_config::credentials`], shared with the operator.
//! This module checks passwords against the parsed users. Passwords never appear
//! here; error messages name line numbers only.
//!
//! Checks take the same time whether or not the user exists: an unknown name is
//! verified against a dummy hash of the same cost, and every failure gets the same
//! reply. Failures are counted per client IP; past a threshold replies are delayed,
//! and past a second one the IP is refused for a while.

// TODO(structure): Credentials::load reads the credentials file with std::fs at start-up
// and again from the reload watcher's async task (reload.rs); move the read to
// spawn_blocking or tokio::fs.
#![allow(clippy::disallowed_methods)]

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordVerifier};
use postern_config::credentials::{
    CredentialsFile, HashAlgorithm, HashError, LineProblem, is_bcrypt,
};

pub use postern_config::credentials::SenderRule;

/// Errors reading a credentials file.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("cannot read credentials file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("credentials file {path}, line {line}: {problem}")]
    Line {
        path: PathBuf,
        line: usize,
        problem: LineProblem,
    },
    #[error(transparent)]
    Hash(#[from] HashError),
    #[error("no randomness for the dummy password: {0}")]
    Random(getrandom::Error),
}

/// One user of the credentials file.
#[derive(Debug)]
pub struct User {
    pub name: String,
    hash: String,
    /// As in the file, in lower case.
    pub senders: Vec<SenderRule>,
}

impl User {
    /// Whether `sender` (an address, `local@domain`) is one the user may use.
    pub fn may_send_as(&self, sender: &str) -> bool {
        let sender = sender.to_lowercase();
        let domain = sender.rsplit_once('@').map(|(_, d)| d);
        self.senders.iter().any(|rule| match rule {
            SenderRule::Any => true,
            SenderRule::Address(a) => *a == sender,
            SenderRule::Domain(d) => domain == Some(d.as_str()),
        })
    }
}

/// All users of one version of the credentials file.
#[derive(Debug, Default)]
pub struct Credentials {
    users: HashMap<String, Arc<User>>,
}

impl Credentials {
    /// Parses the credentials file format (see [`postern_config::credentials`]).
    pub fn parse(text: &str, path: &Path) -> Result<Self, CredentialsError> {
        let file = CredentialsFile::parse(text).map_err(|e| CredentialsError::Line {
            path: path.to_owned(),
            line: e.line,
            problem: e.problem,
        })?;
        let users = file
            .users()
            .map(|line| {
                let user = User {
                    name: line.name().to_owned(),
                    hash: line.hash().to_owned(),
                    senders: line
                        .senders()
                        .iter()
                        .map(SenderRule::to_lowercase)
                        .collect(),
                };
                (user.name.clone(), Arc::new(user))
            })
            .collect();
        Ok(Self { users })
    }

    /// Reads and parses a file.
    pub fn load(path: &Path) -> Result<Self, CredentialsError> {
        let text = std::fs::read_to_string(path).map_err(|source| CredentialsError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// The user called `name`.
    pub fn user(&self, name: &str) -> Option<Arc<User>> {
        self.users.get(name).cloned()
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether there are no users.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

/// Hashes a password with argon2id or, with `bcrypt`, bcrypt.
pub fn hash_password(password: &str, bcrypt: bool) -> Result<String, CredentialsError> {
    let algorithm = if bcrypt {
        HashAlgorithm::Bcrypt
    } else {
        HashAlgorithm::Argon2id
    };
    Ok(postern_config::credentials::hash_password(
        password, algorithm,
    )?)
}

fn verify_hash(hash: &str, password: &str) -> bool {
    if is_bcrypt(hash) {
        return bcrypt::verify(password, hash).unwrap_or(false);
    }
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// The current credentials, replaced when the file changes.
pub struct CredentialStore {
    path: PathBuf,
    current: RwLock<Arc<Credentials>>,
    /// Verified against when the user is unknown, so timing does not tell.
    dummy_hash: String,
}

impl CredentialStore {
    pub fn load(path: &Path) -> Result<Self, CredentialsError> {
        let creds = Credentials::load(path)?;
        let mut pw = [0u8; 16];
        getrandom::fill(&mut pw).map_err(CredentialsError::Random)?;
        let dummy_hash = hash_password(&format!("{pw:?}"), false)?;
        Ok(Self {
            path: path.to_owned(),
            current: RwLock::new(Arc::new(creds)),
            dummy_hash,
        })
    }

    /// The credentials in force.
    pub fn current(&self) -> Arc<Credentials> {
        self.current.read().map(|c| c.clone()).unwrap_or_default()
    }

    /// Checks a name and password; slow on purpose (call from a blocking thread).
    /// Returns the user only when both are right.
    pub fn verify(&self, name: &str, password: &str) -> Option<Arc<User>> {
        let creds = self.current();
        match creds.users.get(name) {
            Some(user) => verify_hash(&user.hash, password).then(|| user.clone()),
            None => {
                let _ = verify_hash(&self.dummy_hash, password);
                None
            }
        }
    }

    /// Checks `password` against `user`'s hash, or against a dummy hash of the same
    /// cost when there is no such user (so timing does not tell); slow on purpose
    /// (call from a blocking thread).
    pub fn verify_against(&self, user: Option<&User>, password: &str) -> bool {
        match user {
            Some(user) => verify_hash(&user.hash, password),
            None => {
                let _ = verify_hash(&self.dummy_hash, password);
                false
            }
        }
    }

    /// Reloads the file whenever it changes.
    pub fn spawn_reloader(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        crate::reload::spawn_watcher(
            "credentials",
            vec![self.path.clone()],
            interval,
            move || {
                let creds = Credentials::load(&this.path).map_err(|e| e.to_string())?;
                tracing::info!(users = creds.len(), "credentials loaded");
                if let Ok(mut cur) = this.current.write() {
                    *cur = Arc::new(creds);
                }
                Ok(())
            },
        )
    }
}

/// What the failure tracker says about a client IP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go on normally.
    Allow,
    /// Go on, after waiting this long.
    Delay(Duration),
    /// Refuse with 421 and close; the IP is blocked.
    Block,
}

#[derive(Debug)]
struct Failures {
    count: u32,
    window_start: Instant,
    blocked_until: Option<Instant>,
}

/// AUTH failures per client IP.
pub struct FailureTracker {
    delay_after: u32,
    delay_step: Duration,
    block_after: u32,
    window: Duration,
    block_for: Duration,
    by_ip: Mutex<HashMap<IpAddr, Failures>>,
}

/// Entries kept before expired ones are swept.
const SWEEP_AT: usize = 10_000;

impl FailureTracker {
    pub fn new(cfg: &postern_config::AuthConfig) -> Self {
        Self {
            delay_after: cfg.delay_after_failures,
            delay_step: cfg.failure_delay,
            block_after: cfg.block_after_failures,
            window: cfg.failure_window,
            block_for: cfg.block_duration,
            by_ip: Mutex::new(HashMap::new()),
        }
    }

    /// Whether the IP is blocked now.
    pub fn is_blocked(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        self.by_ip
            .lock()
            .ok()
            .and_then(|m| m.get(&ip).and_then(|f| f.blocked_until))
            .is_some_and(|until| until > now)
    }

    /// Takes back one recorded attempt (it turned out to be a success, or was never
    /// checked).
    pub fn forgive(&self, ip: IpAddr) {
        if let Ok(mut map) = self.by_ip.lock()
            && let Some(f) = map.get_mut(&ip)
        {
            f.count = f.count.saturating_sub(1);
        }
    }

    /// Records one failure and says what to do.
    pub fn record_failure(&self, ip: IpAddr) -> Verdict {
        match self.record_attempt(ip) {
            Verdict::Block => Verdict::Block,
            _ if self.failed(ip) => Verdict::Block,
            v => v,
        }
    }

    /// After an attempt recorded with [`Self::record_attempt`] failed: blocks the IP
    /// (true) when its failures reached `block_after_failures`.
    pub fn failed(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        let Ok(mut map) = self.by_ip.lock() else {
            return true;
        };
        match map.get_mut(&ip) {
            Some(f) if f.count >= self.block_after => {
                f.blocked_until = Some(now + self.block_for);
                true
            }
            _ => false,
        }
    }

    /// Counts an attempt before it is checked (a success is taken back with
    /// [`Self::forgive`]). Block: more attempts than `block_after_failures` are under
    /// way or failed, so this one is refused unchecked; Delay: a failure is to be
    /// answered that much later.
    pub fn record_attempt(&self, ip: IpAddr) -> Verdict {
        let now = Instant::now();
        let Ok(mut map) = self.by_ip.lock() else {
            return Verdict::Block;
        };
        if map.len() >= SWEEP_AT {
            let (window, block_for) = (self.window, self.block_for);
            map.retain(|_, f| {
                now.duration_since(f.window_start) < window.max(block_for)
                    || f.blocked_until.is_some_and(|u| u > now)
            });
        }
        let f = map.entry(ip).or_insert(Failures {
            count: 0,
            window_start: now,
            blocked_until: None,
        });
        if now.duration_since(f.window_start) > self.window
            && f.blocked_until.is_none_or(|u| u <= now)
        {
            f.count = 0;
            f.window_start = now;
            f.blocked_until = None;
        }
        f.count += 1;
        if f.count > self.block_after {
            f.blocked_until = Some(now + self.block_for);
            Verdict::Block
        } else if f.count > self.delay_after {
            Verdict::Delay(self.delay_step * (f.count - self.delay_after))
        } else {
            Verdict::Allow
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_verify() {
        let argon = hash_password("s3cret", false).unwrap();
        let bcrypt = bcrypt::hash("other", 4).unwrap();
        let text =
            format!("# users\n\napp:{argon}:app@example.com, @example.org\nold:{bcrypt}:*\n");
        let creds = Credentials::parse(&text, Path::new("creds")).unwrap();
        assert_eq!(creds.len(), 2);
        let app = &creds.users["app"];
        assert!(verify_hash(&app.hash, "s3cret"));
        assert!(!verify_hash(&app.hash, "s3cret "));
        assert!(app.may_send_as("App@Example.com"));
        assert!(app.may_send_as("anyone@example.org"));
        assert!(!app.may_send_as("other@example.com"));
        assert!(!app.may_send_as("x@sub.example.org"));
        let old = &creds.users["old"];
        assert!(verify_hash(&old.hash, "other"));
        assert!(old.may_send_as("x@anything.example"));
    }

    #[test]
    fn malformed_lines_name_the_line_not_the_content() {
        for (text, line) in [
            ("a:$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA\n", 1),
            ("\nb:plaintext:a@b.example\n", 2),
            ("c:$2b$04$abcdefghijklmnopqrstuv:\n", 1),
            ("d:$2b$04$abcdefghijklmnopqrstuv:nodomain\n", 1),
        ] {
            let err = Credentials::parse(text, Path::new("f"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(&format!("line {line}")), "{err}");
            assert!(!err.contains("plaintext"), "{err}");
        }
    }

    #[test]
    fn failures_delay_then_block() {
        let cfg = postern_config::AuthConfig {
            delay_after_failures: 2,
            block_after_failures: 4,
            failure_delay: Duration::from_millis(10),
            ..Default::default()
        };
        let t = FailureTracker::new(&cfg);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(t.record_failure(ip), Verdict::Allow);
        assert_eq!(t.record_failure(ip), Verdict::Allow);
        assert_eq!(
            t.record_failure(ip),
            Verdict::Delay(Duration::from_millis(10))
        );
        assert!(!t.is_blocked(ip));
        assert_eq!(t.record_failure(ip), Verdict::Block);
        assert!(t.is_blocked(ip));
        assert!(!t.is_blocked("192.0.2.2".parse().unwrap()));
    }

    /// Attempts count before they are checked: with more under way than the block
    /// threshold, the next is refused unchecked; a success is taken back.
    #[test]
    fn attempts_count_before_checking() {
        let cfg = postern_config::AuthConfig {
            delay_after_failures: 5,
            block_after_failures: 3,
            ..Default::default()
        };
        let t = FailureTracker::new(&cfg);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(t.record_attempt(ip), Verdict::Allow);
        }
        assert_eq!(t.record_attempt(ip), Verdict::Block, "a fourth at once");
        assert!(t.is_blocked(ip));

        let t = FailureTracker::new(&cfg);
        assert_eq!(t.record_failure(ip), Verdict::Allow);
        assert_eq!(t.record_failure(ip), Verdict::Allow);
        // A right password at the threshold still works, and is taken back.
        assert_eq!(t.record_attempt(ip), Verdict::Allow);
        t.forgive(ip);
        assert!(!t.is_blocked(ip));
        // The next failure is the third: blocked.
        assert_eq!(t.record_attempt(ip), Verdict::Allow);
        assert!(t.failed(ip));
        assert!(t.is_blocked(ip));
    }
}
