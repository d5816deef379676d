//! The committer thread: a message is accepted only once it has made it durable. It
//! takes every commit waiting at that moment (group commit) and calls `syncfs(2)`
//! once for the batch, which writes file data and directory entries of the spool
//! filesystem to stable storage. Only then does any session in the batch say 250.

#![allow(clippy::disallowed_methods)]

use std::fs::{self, File};
use std::io::{self, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;

use tokio::sync::oneshot;

use super::recycle::Recycler;
use super::{SpoolError, io_err};

/// Commits taken into one batch at most.
const MAX_BATCH: usize = 4096;

/// One message to make durable.
pub(super) struct CommitJob {
    pub path: PathBuf,
    /// The file, when the writer already has one, and whether it is recycled.
    pub file: Option<(File, bool)>,
    /// What is left to write: buffered content, envelope and footer.
    pub tail: Vec<u8>,
    pub done: oneshot::Sender<Result<(), SpoolError>>,
}

/// Starts the committer for the message files in `messages`; it runs until every
/// sender of the returned channel is gone. Blocking (start-up only).
pub(super) fn start(
    messages: &Path,
    files: Arc<Recycler>,
    metrics: Arc<crate::metrics::Metrics>,
) -> Result<std_mpsc::Sender<CommitJob>, SpoolError> {
    let (tx, rx) = std_mpsc::channel::<CommitJob>();
    let sync_dir = File::open(messages).map_err(io_err(messages))?;
    std::thread::Builder::new()
        .name("spool-commit".into())
        .spawn(move || committer(rx, sync_dir, &files, metrics))
        .map_err(io_err(messages))?;
    Ok(tx)
}

/// The committer thread: one `syncfs` per batch of waiting commits.
fn committer(
    rx: std_mpsc::Receiver<CommitJob>,
    sync_dir: File,
    files: &Recycler,
    metrics: Arc<crate::metrics::Metrics>,
) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let mut written = Vec::with_capacity(batch.len());
        for job in batch {
            let CommitJob {
                path,
                file,
                tail,
                done,
            } = job;
            match write_tail(files, &path, file, &tail) {
                Ok(()) => written.push((path, done)),
                Err(e) => {
                    let _ = fs::remove_file(&path);
                    let _ = done.send(Err(e));
                }
            }
        }
        if written.is_empty() {
            continue;
        }
        let started = std::time::Instant::now();
        let synced = rustix::fs::syncfs(&sync_dir);
        metrics
            .spool_commit_seconds
            .observe(started.elapsed().as_secs_f64());
        metrics.spool_commit_batch.observe(written.len() as f64);
        match synced {
            Ok(()) => {
                for (_, done) in written {
                    let _ = done.send(Ok(()));
                }
            }
            Err(errno) => {
                // Nothing in this batch is known to be durable: refuse all (the
                // clients keep their copies) and remove the files.
                for (path, done) in written {
                    let _ = fs::remove_file(&path);
                    let _ = done.send(Err(SpoolError::Io {
                        path,
                        source: io::Error::from(errno),
                    }));
                }
            }
        }
    }
}

/// Writes the rest of one message (to a file of its own when it has none yet).
fn write_tail(
    files: &Recycler,
    path: &Path,
    file: Option<(File, bool)>,
    tail: &[u8],
) -> Result<(), SpoolError> {
    let (mut file, recycled) = match file {
        Some(f) => f,
        None => files.new_file(path)?,
    };
    file.write_all(tail).map_err(io_err(path))?;
    if recycled {
        // Cut what is left of the file's previous message.
        let len = file.stream_position().map_err(io_err(path))?;
        file.set_len(len).map_err(io_err(path))?;
    }
    Ok(())
}
