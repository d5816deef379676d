//! `[spool]`: where accepted messages are stored durably.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The durable message store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    /// Directory holding queued messages; created when missing.
    pub directory: PathBuf,
    /// Below this much free space new mail is refused with 452 4.3.1 and the gateway
    /// reports itself not ready, so queued mail always has room to be delivered.
    pub min_free_bytes: u64,
    /// Files of delivered messages kept (in `free/` under the directory) for new
    /// messages to reuse, so that a busy spool does not allocate and free an inode per
    /// message; only files of at most 64 KiB are kept. 0 removes every delivered file.
    pub recycle_files: usize,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self {
            directory: PathBuf::from("/var/spool/postern"),
            min_free_bytes: 100 * 1024 * 1024,
            recycle_files: 1000,
        }
    }
}
