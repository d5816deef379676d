//! Time for the queue: wall-clock seconds for what is recorded (arrival, next
//! attempt), the jitter source for retry delays, the lifetime rule and how an age
//! reads in a bounce.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A number in [0, 1) for retry jitter.
pub fn random_unit() -> f64 {
    let mut b = [0u8; 4];
    let _ = getrandom::fill(&mut b);
    f64::from(u32::from_le_bytes(b)) / (f64::from(u32::MAX) + 1.0)
}

/// A message expires when it has been tried at least once and is older than the
/// maximum lifetime (it is tried at least once, however old it arrived).
pub fn expired(attempts: u32, age: Duration, max_lifetime: Duration) -> bool {
    attempts > 0 && age >= max_lifetime
}

/// An age as a bounce says it: `3d4h`, `2h5m`, `40s`.
pub fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 86_400 {
        format!("{}d{}h", s / 86_400, (s % 86_400) / 3600)
    } else if s >= 3600 {
        format!("{}h{}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetime_and_ages() {
        let h = Duration::from_secs(3600);
        assert!(!expired(0, 10 * h, h), "never before a first attempt");
        assert!(expired(1, h, h));
        assert!(!expired(3, h / 2, h));
        assert_eq!(humanize(Duration::from_secs(40)), "40s");
        assert_eq!(humanize(Duration::from_secs(7500)), "2h5m");
        assert_eq!(humanize(Duration::from_secs(3 * 86_400 + 4 * 3600)), "3d4h");
        let u = random_unit();
        assert!((0.0..1.0).contains(&u));
    }
}
