//! Watching files that may change under a running gateway (TLS pair, credentials).
//! Polling metadata is deliberate: Kubernetes updates mounted Secrets by swapping a
//! symlink, which inotify on the file itself does not see, while `metadata()` follows
//! the link and notices.

//!
//! The poll and the reload both touch the file system, so both run on the blocking
//! pool, never on an async worker thread.

// Only ever called from spawn_blocking (below).
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
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
    F: Fn() -> Result<(), String> + Send + Sync + 'static,
{
    let (paths, reload) = (Arc::new(paths), Arc::new(reload));
    tokio::spawn(async move {
        let first = paths.clone();
        let mut seen = tokio::task::spawn_blocking(move || stamp(&first))
            .await
            .ok()
            .flatten();
        let mut tick = tokio::time::interval(interval);
        tick.tick().await;
        loop {
            tick.tick().await;
            let (paths, reload, before) = (paths.clone(), reload.clone(), seen.clone());
            let changed = tokio::task::spawn_blocking(move || {
                let now = stamp(&paths);
                (now != before && now.is_some()).then(|| (now, reload()))
            })
            .await;
            match changed {
                Ok(Some((now, Ok(())))) => {
                    seen = now;
                    tracing::info!(what, "reloaded after a file change");
                }
                Ok(Some((_, Err(error)))) => {
                    tracing::warn!(what, %error, "file change not loaded; keeping the previous state")
                }
                Ok(None) | Err(_) => {}
            }
        }
    })
}
