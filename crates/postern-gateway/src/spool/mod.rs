//! The durable message store, and the only code that knows its files. Under the spool
//! directory:
//!
//! ```text
//! messages/<ID>   one file per accepted message (format: see `format.rs`)
//! free/<name>     files of delivered messages kept for reuse (see `recycle.rs`)
//! state/<ID>      delivery records of messages tried at least once (`StateStore`)
//! postern.pid     the process ID of the gateway running on it
//! ```
//!
//! A message is accepted only once it is durable: [`Spool::create`] gives a
//! [`SpoolWriter`] that streams the body to the file as it arrives, and its `commit`
//! returns after the committer thread (see `commit.rs`) has synced it. Every file is
//! self-validating, so [`Spool::open`] removes what a crash cut short (see
//! `recover.rs`); the `queue` CLI reads and changes a spool through [`admin`].
//!
//! Blocking file I/O stays off async tasks: what async code calls is async (it uses
//! `spawn_blocking` or `tokio::fs`), and what blocks says so in its documentation
//! (start-up and the CLI only). The one exception is the unlink in `SpoolWriter`'s
//! `Drop`, for a session cancelled with content on disk. This module must never hold
//! a whole message body in memory.

#![allow(clippy::disallowed_methods)]

pub mod admin;
mod commit;
mod format;
mod id;
mod recover;
mod recycle;
mod state;
mod writer;

#[cfg(test)]
mod tests;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;

use serde::{Deserialize, Serialize};

pub use recycle::RECYCLE_MAX_LEN;
pub use state::StateStore;
pub use writer::SpoolWriter;

/// Errors of the spool.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool I/O on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("spool committer has stopped")]
    CommitterGone,
    #[error("spool file {path} is damaged: {what}")]
    Damaged { path: PathBuf, what: &'static str },
    #[error("no message {0} in the spool")]
    NotFound(String),
    #[error("{0:?} is not a queue ID")]
    InvalidId(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What the gateway knows about a message besides its content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Queue ID, also the file name.
    pub id: String,
    /// MAIL FROM address; empty for the null sender.
    pub sender: String,
    /// RCPT TO addresses in the order given.
    pub recipients: Vec<String>,
    /// Seconds since the Unix epoch when the message was accepted.
    pub received_at: u64,
    /// The same in milliseconds (0 in files written before it was recorded).
    #[serde(default)]
    pub received_at_ms: u64,
    /// Client IP address.
    pub client_ip: String,
    /// HELO/EHLO name the client gave.
    pub helo: String,
    /// Authenticated user, if any.
    pub auth_user: Option<String>,
    /// Listener kind that took the message.
    pub listener: String,
    /// The client asked for SMTPUTF8.
    pub smtputf8: bool,
    /// The content holds octets above 127.
    pub eight_bit: bool,
}

/// A complete message found in the spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpooledMessage {
    pub envelope: Envelope,
    /// Content length in octets.
    pub size: u64,
}

/// The content of a message as [`Spool::open_body`] gives it.
pub type BodyReader = tokio::io::Take<tokio::fs::File>;

/// Where everything is under a spool directory.
struct Layout {
    root: PathBuf,
}

impl Layout {
    fn new(root: &Path) -> Self {
        Layout {
            root: root.to_owned(),
        }
    }

    fn messages(&self) -> PathBuf {
        self.root.join("messages")
    }

    fn message(&self, id: &str) -> PathBuf {
        self.messages().join(id)
    }

    fn free(&self) -> PathBuf {
        self.root.join("free")
    }

    fn state(&self) -> PathBuf {
        self.root.join("state")
    }

    fn pid_file(&self) -> PathBuf {
        self.root.join("postern.pid")
    }
}

struct Inner {
    layout: Layout,
    /// `messages/`, joined once.
    messages: PathBuf,
    jobs: std::sync::Mutex<std_mpsc::Sender<commit::CommitJob>>,
    ids: id::IdGenerator,
    recycler: Arc<recycle::Recycler>,
}

impl Inner {
    fn message(&self, id: &str) -> PathBuf {
        self.messages.join(id)
    }

    /// Removes (or recycles) the file of message `id`. Blocking.
    fn remove_blocking(&self, id: &str) {
        let path = self.message(id);
        if self.recycler.recycle(&path, id) {
            return;
        }
        if let Err(e) = fs::remove_file(&path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(id, error = %e, "cannot remove delivered message");
        }
    }
}

/// Handle to the spool, cheap to clone.
#[derive(Clone)]
pub struct Spool {
    inner: Arc<Inner>,
}

impl Spool {
    /// Opens (creating when missing) the spool at `dir`, removes damaged or partial
    /// files, starts the committer and returns every complete message.
    /// Up to `recycle_files` files of delivered messages are kept for reuse.
    /// Blocking: for start-up only.
    pub fn open(
        dir: &Path,
        recycle_files: usize,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Result<(Spool, Vec<SpooledMessage>), SpoolError> {
        let layout = Layout::new(dir);
        let messages = layout.messages();
        private_dir(&messages).map_err(io_err(&messages))?;
        let free = layout.free();
        private_dir(&free).map_err(io_err(&free))?;
        let recycler = Arc::new(recycle::Recycler::open(free, recycle_files)?);
        let recovered = recover::scan(&messages, true)?;
        let jobs = commit::start(&messages, recycler.clone(), metrics)?;
        let spool = Spool {
            inner: Arc::new(Inner {
                layout,
                messages,
                jobs: std::sync::Mutex::new(jobs),
                ids: id::IdGenerator::new(),
                recycler,
            }),
        };
        Ok((spool, recovered))
    }

    /// Starts a new message; the caller streams its content and then commits.
    pub fn create(&self) -> SpoolWriter {
        let id = self.inner.ids.next();
        let path = self.inner.message(&id);
        SpoolWriter::new(self.inner.clone(), id, path)
    }

    /// The spool's top directory (for its free space).
    pub fn root(&self) -> &Path {
        &self.inner.layout.root
    }

    /// The file for the process ID of the gateway running on this spool.
    pub fn pid_file(&self) -> PathBuf {
        self.inner.layout.pid_file()
    }

    /// The content of message `id`: the first `size` octets of its file, `size` being
    /// the message's size (or less, to read only its start).
    pub async fn open_body(&self, id: &str, size: u64) -> io::Result<BodyReader> {
        use tokio::io::AsyncReadExt;
        let f = tokio::fs::File::open(self.inner.message(id)).await?;
        Ok(f.take(size))
    }

    /// Those of `ids` whose messages are no longer in the spool (an administrator
    /// deleted them).
    pub async fn missing(&self, ids: Vec<String>) -> Vec<String> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            ids.into_iter()
                .filter(|id| !inner.message(id).exists())
                .collect()
        })
        .await
        .unwrap_or_default()
    }

    /// Removes a message whose every recipient is final (its file may be recycled).
    pub async fn remove(&self, id: &str) {
        let inner = self.inner.clone();
        let id = id.to_owned();
        let _ = tokio::task::spawn_blocking(move || inner.remove_blocking(&id)).await;
    }

    /// The delivery records, in `state/` (created private when missing).
    /// Blocking: for start-up only.
    pub fn state_store(&self) -> Result<StateStore, SpoolError> {
        let dir = self.inner.layout.state();
        private_dir(&dir).map_err(io_err(&dir))?;
        Ok(StateStore::new(dir))
    }
}

/// Creates a directory (and its parents) that only the gateway's user may enter; mail
/// lives there.
/// An existing directory (from an older version) is made private too.
fn private_dir(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)?;
    if fs::metadata(path)?.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Narrows a file written by an older version with a wider mode to 0600 (at start, so
/// that accepting and recycling never need to).
fn make_private(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if fs::metadata(path)?.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}
