//! The delivery records kept beside the messages, `state/<ID>`: opaque octets to the
//! spool (the queue decides what they say). Writes are atomic (write `<ID>.tmp`, then
//! rename) but not synced: losing a record in a crash can only cause a repeated
//! attempt, never a lost message, because a message file is removed only after every
//! recipient is final.

#![allow(clippy::disallowed_methods)]

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};

/// The `state/` directory of one spool; cheap to clone.
#[derive(Debug, Clone)]
pub struct StateStore {
    dir: PathBuf,
}

impl StateStore {
    pub(super) fn new(dir: PathBuf) -> Self {
        StateStore { dir }
    }

    /// Where the records are (for messages about it).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// The record of message `id`; None when there is none or it cannot be read.
    /// Blocking: for start-up and the CLI.
    pub fn read_blocking(&self, id: &str) -> Option<Vec<u8>> {
        std::fs::read(self.path(id)).ok()
    }

    /// Replaces the record of message `id` atomically.
    pub async fn write(&self, id: &str, bytes: Vec<u8>) -> io::Result<()> {
        let tmp = self.dir.join(format!("{id}.tmp"));
        let path = self.path(id);
        tokio::task::spawn_blocking(move || {
            std::fs::write(&tmp, bytes)?;
            std::fs::rename(&tmp, path)
        })
        .await
        .map_err(io::Error::other)?
    }

    /// Removes the record of message `id` (the message is done), if there is one.
    pub async fn remove(&self, id: &str) {
        let path = self.path(id);
        let _ = tokio::task::spawn_blocking(move || std::fs::remove_file(path)).await;
    }

    /// The same, blocking (the CLI).
    pub(super) fn remove_blocking(&self, id: &str) {
        let _ = std::fs::remove_file(self.path(id));
    }

    /// Removes every record but those of the messages in `keep` (left behind by
    /// messages that are gone). Blocking: for start-up.
    pub fn retain_blocking(&self, keep: &HashSet<&str>) {
        if let Ok(dir) = std::fs::read_dir(&self.dir) {
            for e in dir.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !keep.contains(name.as_str()) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}
