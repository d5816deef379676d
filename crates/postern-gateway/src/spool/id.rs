//! Queue IDs: 11 base-32 digits of the time in microseconds, then 4 of a counter that
//! starts at a random value; unique within a process and across restarts, sortable by
//! time, safe as file names.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

const ID_ALPHABET: &[u8; 32] = b"0123456789BCDFGHJKLMNPQRSTVWXYZa";

/// Hands out queue IDs.
pub(super) struct IdGenerator {
    counter: AtomicU64,
}

impl IdGenerator {
    pub(super) fn new() -> Self {
        let mut seed = [0u8; 8];
        let _ = getrandom::fill(&mut seed);
        Self {
            counter: AtomicU64::new(u64::from_le_bytes(seed)),
        }
    }

    pub(super) fn next(&self) -> String {
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut id = String::with_capacity(15);
        for shift in (0..11).rev() {
            id.push(ID_ALPHABET[((micros >> (shift * 5)) & 31) as usize] as char);
        }
        for shift in (0..4).rev() {
            id.push(ID_ALPHABET[((n >> (shift * 5)) & 31) as usize] as char);
        }
        id
    }
}

/// Whether `id` can name a message file: what an administrator types is checked
/// before it becomes part of a path.
pub(super) fn is_valid(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric())
}
