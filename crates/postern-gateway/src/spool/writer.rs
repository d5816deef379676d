//! Streaming one new message into its file. The body goes to the file as it arrives
//! in chunks of [`WRITE_CHUNK`] octets, written by `spawn_blocking`; bounded buffers
//! only, never a whole body in memory.

#![allow(clippy::disallowed_methods)]

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::commit::CommitJob;
use super::format::{Footer, encode_envelope};
use super::{Envelope, Inner, SpoolError, SpooledMessage, io_err};

/// Body bytes buffered before they are written out.
pub(super) const WRITE_CHUNK: usize = 128 * 1024;

/// Streams one message's content to its file.
pub struct SpoolWriter {
    id: String,
    path: PathBuf,
    spool: Arc<Inner>,
    /// The file once content was written out, and whether it is recycled.
    file: Option<(File, bool)>,
    buf: Vec<u8>,
    len: u64,
    crc: crc32fast::Hasher,
    finished: bool,
    /// A file may exist at `path` (content was written out, or is being).
    on_disk: bool,
}

impl SpoolWriter {
    /// A writer for a new message `id` whose file is `path`; nothing is on disk yet.
    pub(super) fn new(spool: Arc<Inner>, id: String, path: PathBuf) -> Self {
        SpoolWriter {
            id,
            path,
            spool,
            file: None,
            buf: Vec::new(),
            len: 0,
            crc: crc32fast::Hasher::new(),
            finished: false,
            on_disk: false,
        }
    }

    /// The queue ID this message will have.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Content octets so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether no content was written yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends content; writes to the file whenever a chunk is full.
    pub async fn write(&mut self, data: &[u8]) -> Result<(), SpoolError> {
        self.crc.update(data);
        self.len += data.len() as u64;
        self.buf.extend_from_slice(data);
        if self.buf.len() >= WRITE_CHUNK {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), SpoolError> {
        let buf = std::mem::take(&mut self.buf);
        let file = self.file.take();
        let path = self.path.clone();
        // Even if this write fails or the session is cancelled while it runs, a file may
        // be left at `path`: abort and drop remove it.
        self.on_disk = true;
        let recycler = self.spool.recycler.clone();
        let (file, mut buf) = tokio::task::spawn_blocking(move || {
            let mut file = match file {
                Some(f) => f,
                None => recycler.new_file(&path)?,
            };
            file.0.write_all(&buf).map_err(io_err(&path))?;
            Ok::<_, SpoolError>((file, buf))
        })
        .await
        .map_err(|e| SpoolError::Io {
            path: self.path.clone(),
            source: io::Error::other(e),
        })??;
        self.file = Some(file);
        buf.clear();
        self.buf = buf;
        Ok(())
    }

    /// Records the envelope and makes the message durable. Returns once it is on
    /// stable storage; only then may the session reply 250.
    pub async fn commit(mut self, envelope: &Envelope) -> Result<SpooledMessage, SpoolError> {
        let env = encode_envelope(envelope).map_err(|e| SpoolError::Io {
            path: self.path.clone(),
            source: io::Error::other(e),
        })?;
        let mut crc = std::mem::take(&mut self.crc);
        crc.update(&env);
        let mut tail = std::mem::take(&mut self.buf);
        tail.extend_from_slice(&env);
        let footer = Footer {
            body_len: self.len,
            env_len: env.len() as u32,
            crc: crc.finalize(),
        };
        tail.extend_from_slice(&footer.encode());
        let (done, result) = oneshot::channel();
        let job = CommitJob {
            path: self.path.clone(),
            file: self.file.take(),
            tail,
            done,
        };
        let sent = match self.spool.jobs.lock() {
            Ok(jobs) => jobs.send(job).is_ok(),
            Err(_) => false,
        };
        // From here the committer owns the file, including its removal on failure.
        self.finished = true;
        if !sent {
            return Err(SpoolError::CommitterGone);
        }
        result.await.map_err(|_| SpoolError::CommitterGone)??;
        Ok(SpooledMessage {
            envelope: envelope.clone(),
            size: self.len,
        })
    }

    /// Drops the message (refused, aborted or connection lost).
    pub async fn abort(mut self) {
        self.finished = true;
        self.file = None;
        if self.on_disk {
            let path = self.path.clone();
            let _ = tokio::task::spawn_blocking(move || fs::remove_file(path)).await;
        }
    }
}

impl Drop for SpoolWriter {
    fn drop(&mut self) {
        // A session that ended without commit or abort (its task was cancelled):
        // the partial file must not stay behind. This one unlink blocks where the
        // writer is dropped; it cannot wait for a blocking task, and only cancelled
        // sessions with content on disk get here.
        if !self.finished && self.on_disk {
            let _ = fs::remove_file(&self.path);
        }
    }
}
