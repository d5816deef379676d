//! Watching files that may change under a running gateway (TLS pair, credentials).
//! Polling metadata is deliberate: Kubernetes updates mounted Secrets by swapping a
//! symlink, which inotify on the file itself does not see, while `metadata()` follows
//! the link and notices.

// TODO(structure): the file watcher polls std::fs::metadata (and its reload callbacks
// read files) on an async task; move the poll and the reload into spawn_blocking.
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Modification time and length of each file, or None while one is missing.
fn stamp(paths: &[PathBuf]) -> Option<Vec<(SystemTime, u64)>> {
    paths
        .iter()
        .map(|p: &PathBuf| {
            let m = std::fs::metadata(Path::new(p)).ok()?;
            Some((m.modified().ok()?, m.len()))
        })
        .collect()
}

/// Calls `reload` whenever one of `paths` changes; a failed reload is logged and
/// retried at the next tick, and the old state stays in force meanwhile.
pub fn spawn_watcher<F>(
    what: &'static str,
    paths: Vec<PathBuf>,
    interval: Duration,
    reload: F,
) -> tokio::task::JoinHandle<()>
where
    F: Fn() -> Result<(), String> + Send + 'static,
{
    tokio::spawn(async move {
        let mut seen = stamp(&paths);
        let mut tick = tokio::time::interval(interval);
        tick.tick().await;
        loop {
            tick.tick().await;
            let now = stamp(&paths);
            if now == seen || now.is_none() {
                continue;
            }
            match reload() {
                Ok(()) => {
                    seen = now;
                    tracing::info!(what, "reloaded after a file change");
                }
                Err(error) => {
                    tracing::warn!(what, %error, "file change not loaded; keeping the previous state")
                }
            }
        }
    })
}
