//! The durable message store. A message is one file, `messages/<ID>`:
//!
//! ```text
//! body (as received, Received header first) | envelope (JSON) | footer (45 octets)
//! footer = "\nPOSTERN1 " <body length: 16 hex> " " <envelope length: 8 hex> " "
//!          <CRC-32 of body and envelope: 8 hex> "\n"
//! ```
//!
//! The body streams to the file as it arrives; bounded buffers only. A message is
//! accepted only once a committer thread has made it durable: it takes every commit
//! waiting at that moment (group commit) and calls `syncfs(2)` once for the batch,
//! which writes file data and directory entries of the spool filesystem to stable
//! storage. Only then does any session in the batch say 250.
//!
//! The footer makes every file self-validating: a file cut short by a crash, or whose
//! blocks did not all reach the disk, fails the length or CRC check and is removed on
//! start; it never got a 250, so the client still has it.
//!
//! The files of delivered messages are recycled: up to `spool.recycle_files` of them
//! (those of at most [`RECYCLE_MAX_LEN`] octets) move to `free/`, and a new message
//! takes one of them (renamed to its ID, overwritten from the start, cut to its length
//! at commit) instead of a new file. A busy spool then neither allocates nor frees an
//! inode or blocks per message, which on ext4 is the dearest part of creating a file
//! once many were deleted recently. A recycled file cut short by a crash still holds
//! bytes of the old message; its footer, CRC or envelope ID (which must be the file's
//! name) then fails the check, and it is removed like any partial file.
//!
//! This module must never hold a whole message body in memory.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

const FOOTER_LEN: usize = 45;
const FOOTER_MAGIC: &[u8] = b"\nPOSTERN1 ";
/// Body bytes buffered before they are written out.
const WRITE_CHUNK: usize = 128 * 1024;
/// Commits taken into one batch at most.
const MAX_BATCH: usize = 4096;
/// Only files up to this size are recycled, so that the pool holds at most
/// `recycle_files` times this much space.
pub const RECYCLE_MAX_LEN: u64 = 64 * 1024;

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

struct CommitJob {
    path: PathBuf,
    /// The file, when the writer already has one, and whether it is recycled.
    file: Option<(File, bool)>,
    tail: Vec<u8>,
    done: oneshot::Sender<Result<(), SpoolError>>,
}

struct Inner {
    messages: PathBuf,
    jobs: std::sync::Mutex<std_mpsc::Sender<CommitJob>>,
    ids: IdGenerator,
    recycler: Arc<Recycler>,
}

/// The files of delivered messages kept for reuse, shared by the writers and the
/// committer.
struct Recycler {
    /// `free/`: files of delivered messages waiting to be reused.
    free: PathBuf,
    /// Names of the files in `free/`.
    pool: std::sync::Mutex<Vec<String>>,
    /// How many files `free/` may hold.
    recycle_max: usize,
}

impl Recycler {
    /// A file for a new message at `path`: a recycled one when there is one (the
    /// caller overwrites it from the start and sets its length), else a new file.
    /// Returns the file and whether it is recycled.
    fn new_file(&self, path: &Path) -> Result<(File, bool), SpoolError> {
        loop {
            let name = match self.pool.lock() {
                Ok(mut pool) => pool.pop(),
                Err(_) => None,
            };
            let Some(name) = name else { break };
            let from = self.free.join(&name);
            let moved = rustix::fs::renameat_with(
                rustix::fs::CWD,
                &from,
                rustix::fs::CWD,
                path,
                rustix::fs::RenameFlags::NOREPLACE,
            );
            match moved {
                Ok(()) => {}
                Err(rustix::io::Errno::EXIST) => {
                    // Not the free file's fault: keep it for the next message.
                    if let Ok(mut pool) = self.pool.lock() {
                        pool.push(name);
                    }
                    return Err(io_err(path)(io::Error::from(rustix::io::Errno::EXIST)));
                }
                Err(_) => {
                    let _ = fs::remove_file(&from);
                    continue;
                }
            }
            // Modes of files from an older version were made private at open.
            match OpenOptions::new().write(true).open(path) {
                Ok(file) => return Ok((file, true)),
                Err(_) => {
                    let _ = fs::remove_file(path);
                }
            }
        }
        create_file(path).map(|file| (file, false))
    }

    /// Moves the file of a delivered message to `free/` if the pool has room and the
    /// file is small enough; false when the caller should remove it instead.
    fn recycle(&self, path: &Path, id: &str) -> bool {
        if self.recycle_max == 0 {
            return false;
        }
        let room = self
            .pool
            .lock()
            .map(|pool| pool.len() < self.recycle_max)
            .unwrap_or(false);
        if !room || !fs::metadata(path).is_ok_and(|m| m.len() <= RECYCLE_MAX_LEN) {
            return false;
        }
        if fs::rename(path, self.free.join(id)).is_err() {
            return false;
        }
        if let Ok(mut pool) = self.pool.lock() {
            pool.push(id.to_owned());
        }
        true
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
    pub fn open(
        dir: &Path,
        recycle_files: usize,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Result<(Spool, Vec<SpooledMessage>), SpoolError> {
        let messages = dir.join("messages");
        private_dir(&messages).map_err(io_err(&messages))?;
        let free = dir.join("free");
        private_dir(&free).map_err(io_err(&free))?;
        let mut pool = Vec::new();
        for entry in fs::read_dir(&free).map_err(io_err(&free))? {
            let entry = entry.map_err(io_err(&free))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if pool.len() < recycle_files && entry.file_type().is_ok_and(|t| t.is_file()) {
                make_private(&entry.path()).map_err(io_err(&entry.path()))?;
                pool.push(name);
            } else {
                let _ = fs::remove_file(entry.path());
            }
        }
        let recovered = scan(&messages, true)?;
        let recycler = Arc::new(Recycler {
            free,
            pool: std::sync::Mutex::new(pool),
            recycle_max: recycle_files,
        });
        let (tx, rx) = std_mpsc::channel::<CommitJob>();
        let sync_dir = File::open(&messages).map_err(io_err(&messages))?;
        let files = recycler.clone();
        std::thread::Builder::new()
            .name("spool-commit".into())
            .spawn(move || committer(rx, sync_dir, &files, metrics))
            .map_err(io_err(&messages))?;
        let spool = Spool {
            inner: Arc::new(Inner {
                messages,
                jobs: std::sync::Mutex::new(tx),
                ids: IdGenerator::new(),
                recycler,
            }),
        };
        Ok((spool, recovered))
    }

    /// Starts a new message; the caller streams its content and then commits.
    pub fn create(&self) -> SpoolWriter {
        let id = self.inner.ids.next();
        SpoolWriter {
            path: self.inner.messages.join(&id),
            id,
            spool: self.inner.clone(),
            file: None,
            buf: Vec::new(),
            len: 0,
            crc: crc32fast::Hasher::new(),
            finished: false,
            on_disk: false,
        }
    }

    /// The directory holding message files.
    pub fn messages_dir(&self) -> &Path {
        &self.inner.messages
    }

    /// The spool's top directory.
    pub fn root(&self) -> &Path {
        self.inner.messages.parent().unwrap_or(&self.inner.messages)
    }

    /// Removes a message whose every recipient is final (its file may be recycled).
    pub fn remove(&self, id: &str) {
        let path = self.inner.messages.join(id);
        if self.inner.recycler.recycle(&path, id) {
            return;
        }
        if let Err(e) = fs::remove_file(&path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(id, error = %e, "cannot remove delivered message");
        }
    }
}

/// Lists complete messages without changing anything (for `postern-gateway queue`).
pub fn list(dir: &Path) -> Result<Vec<SpooledMessage>, SpoolError> {
    scan(&dir.join("messages"), false)
}

/// Copies the content of message `id` to `out`.
pub fn copy_body(dir: &Path, id: &str, out: &mut impl Write) -> Result<(), SpoolError> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(SpoolError::NotFound(id.to_owned()));
    }
    let path = dir.join("messages").join(id);
    let mut file = File::open(&path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => SpoolError::NotFound(id.to_owned()),
        _ => SpoolError::Io {
            path: path.clone(),
            source: e,
        },
    })?;
    let (msg, (crc, env_len)) = validate(&mut file, &path)?;
    // The file can be delivered, recycled and reused by another message while it is
    // read: check the CRC again over what was actually copied.
    file.seek(SeekFrom::Start(0)).map_err(io_err(&path))?;
    let mut hasher = crc32fast::Hasher::new();
    let mut reader = (&mut file).take(msg.size);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = reader.read(&mut chunk).map_err(io_err(&path))?;
        if n == 0 {
            break;
        }
        hasher.update(&chunk[..n]);
        out.write_all(&chunk[..n]).map_err(io_err(&path))?;
    }
    let mut env = vec![0u8; env_len as usize];
    file.read_exact(&mut env).map_err(io_err(&path))?;
    hasher.update(&env);
    if hasher.finalize() != crc {
        return Err(SpoolError::Damaged {
            path,
            what: "changed while being read (delivered meanwhile)",
        });
    }
    Ok(())
}

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
        let env = serde_json::to_vec(envelope).map_err(|e| SpoolError::Io {
            path: self.path.clone(),
            source: io::Error::other(e),
        })?;
        let mut crc = std::mem::take(&mut self.crc);
        crc.update(&env);
        let mut tail = std::mem::take(&mut self.buf);
        tail.extend_from_slice(&env);
        tail.extend_from_slice(&footer(self.len, env.len() as u32, crc.finalize()));
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
        // the partial file must not stay behind.
        if !self.finished && self.on_disk {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Creates a directory (and its parents) that only the gateway's user may enter; mail
/// lives there.
/// An existing directory (from an older version) is made private too.
pub fn private_dir(path: &Path) -> io::Result<()> {
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

fn create_file(path: &Path) -> Result<File, SpoolError> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(path))
}

fn footer(body_len: u64, env_len: u32, crc: u32) -> Vec<u8> {
    let f = format!("\nPOSTERN1 {body_len:016x} {env_len:08x} {crc:08x}\n");
    debug_assert_eq!(f.len(), FOOTER_LEN);
    f.into_bytes()
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
            let result = (|| {
                let (mut file, recycled) = match file {
                    Some(f) => f,
                    None => files.new_file(&path)?,
                };
                file.write_all(&tail).map_err(io_err(&path))?;
                if recycled {
                    // Cut what is left of the file's previous message.
                    let len = file.stream_position().map_err(io_err(&path))?;
                    file.set_len(len).map_err(io_err(&path))?;
                }
                Ok(())
            })();
            match result {
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

/// Reads and checks every message file; with `repair`, removes the damaged ones.
fn scan(messages: &Path, repair: bool) -> Result<Vec<SpooledMessage>, SpoolError> {
    let mut out = Vec::new();
    let entries = fs::read_dir(messages).map_err(io_err(messages))?;
    for entry in entries {
        let entry = entry.map_err(io_err(messages))?;
        let path = entry.path();
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err(&path)(e)),
        };
        match validate(&mut file, &path) {
            Ok((msg, _)) => {
                if repair {
                    make_private(&path).map_err(io_err(&path))?;
                }
                out.push(msg);
            }
            Err(SpoolError::Damaged { what, .. }) => {
                if repair {
                    tracing::warn!(path = %path.display(), reason = what,
                        "removing incomplete spool file (never acknowledged)");
                    fs::remove_file(&path).map_err(io_err(&path))?;
                }
            }
            Err(e) => return Err(e),
        }
    }
    out.sort_by(|a, b| {
        (a.envelope.received_at, &a.envelope.id).cmp(&(b.envelope.received_at, &b.envelope.id))
    });
    Ok(out)
}

/// Checks one file's footer and CRC; returns the message and the footer fields.
/// The footer's CRC and envelope length come back with the message.
fn validate(file: &mut File, path: &Path) -> Result<(SpooledMessage, (u32, u32)), SpoolError> {
    let damaged = |what| SpoolError::Damaged {
        path: path.to_owned(),
        what,
    };
    let total = file.metadata().map_err(io_err(path))?.len();
    if total < FOOTER_LEN as u64 {
        return Err(damaged("shorter than its footer"));
    }
    let mut foot = [0u8; FOOTER_LEN];
    file.seek(SeekFrom::Start(total - FOOTER_LEN as u64))
        .map_err(io_err(path))?;
    file.read_exact(&mut foot).map_err(io_err(path))?;
    let fields = parse_footer(&foot).ok_or_else(|| damaged("no valid footer"))?;
    let (body_len, env_len, crc) = fields;
    if body_len + env_len as u64 + FOOTER_LEN as u64 != total {
        return Err(damaged("lengths do not match the file size"));
    }
    file.seek(SeekFrom::Start(0)).map_err(io_err(path))?;
    let mut hasher = crc32fast::Hasher::new();
    let mut reader = (&mut *file).take(body_len);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = reader.read(&mut chunk).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&chunk[..n]);
    }
    let mut env = vec![0u8; env_len as usize];
    file.read_exact(&mut env).map_err(io_err(path))?;
    hasher.update(&env);
    if hasher.finalize() != crc {
        return Err(damaged("checksum mismatch"));
    }
    let envelope: Envelope =
        serde_json::from_slice(&env).map_err(|_| damaged("envelope is not valid JSON"))?;
    // A recycled file still holding its previous message whole (a crash before the new
    // one overwrote it) must not come back as that message.
    if path.file_name().and_then(|n| n.to_str()) != Some(envelope.id.as_str()) {
        return Err(damaged("envelope belongs to another message"));
    }
    Ok((
        SpooledMessage {
            envelope,
            size: body_len,
        },
        (crc, env_len),
    ))
}

fn parse_footer(foot: &[u8; FOOTER_LEN]) -> Option<(u64, u32, u32)> {
    let rest = foot.strip_prefix(FOOTER_MAGIC)?;
    let text = std::str::from_utf8(rest).ok()?.strip_suffix('\n')?;
    let mut parts = text.split(' ');
    let body = u64::from_str_radix(parts.next()?, 16).ok()?;
    let env = u32::from_str_radix(parts.next()?, 16).ok()?;
    let crc = u32::from_str_radix(parts.next()?, 16).ok()?;
    Some((body, env, crc))
}

/// Queue IDs: 11 base-32 digits of the time in microseconds, then 4 of a counter that
/// starts at a random value; unique within a process and across restarts, sortable by
/// time, safe as file names.
struct IdGenerator {
    counter: AtomicU64,
}

const ID_ALPHABET: &[u8; 32] = b"0123456789BCDFGHJKLMNPQRSTVWXYZa";

impl IdGenerator {
    fn new() -> Self {
        let mut seed = [0u8; 8];
        let _ = getrandom::fill(&mut seed);
        Self {
            counter: AtomicU64::new(u64::from_le_bytes(seed)),
        }
    }

    fn next(&self) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn test_metrics() -> Arc<crate::metrics::Metrics> {
        Arc::new(crate::metrics::Metrics::new(&[]).unwrap())
    }

    fn envelope(id: &str) -> Envelope {
        Envelope {
            id: id.to_owned(),
            sender: "a@example.com".into(),
            recipients: vec!["b@example.net".into()],
            received_at: 1,
            received_at_ms: 1000,
            client_ip: "127.0.0.1".into(),
            helo: "client".into(),
            auth_user: None,
            listener: "submission".into(),
            smtputf8: false,
            eight_bit: false,
        }
    }

    #[tokio::test]
    async fn commit_then_recover() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, found) = Spool::open(dir.path(), 10, test_metrics()).unwrap();
        assert!(found.is_empty());
        let mut w = spool.create();
        let id = w.id().to_owned();
        // Larger than one chunk, so the file is written before commit.
        let body = vec![b'x'; WRITE_CHUNK * 2 + 17];
        w.write(&body).await.unwrap();
        w.commit(&envelope(&id)).await.unwrap();
        let mut out = Vec::new();
        copy_body(dir.path(), &id, &mut out).unwrap();
        assert_eq!(out, body);
        let (_, found) = Spool::open(dir.path(), 10, test_metrics()).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].envelope.id, id);
        assert_eq!(found[0].size, body.len() as u64);
    }

    #[tokio::test]
    async fn partial_and_damaged_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = Spool::open(dir.path(), 10, test_metrics()).unwrap();
        let mut w = spool.create();
        let id = w.id().to_owned();
        w.write(b"hello\r\n").await.unwrap();
        w.commit(&envelope(&id)).await.unwrap();
        let good = spool.messages_dir().join(&id);
        let full = fs::read(&good).unwrap();
        // A file cut anywhere, and one with a flipped byte, are not messages.
        for cut in [0, 3, full.len() - 1] {
            fs::write(spool.messages_dir().join(format!("CUT{cut}")), &full[..cut]).unwrap();
        }
        let mut flipped = full.clone();
        flipped[0] ^= 1;
        fs::write(spool.messages_dir().join("FLIP"), &flipped).unwrap();
        assert_eq!(list(dir.path()).unwrap().len(), 1);
        let (_, found) = Spool::open(dir.path(), 10, test_metrics()).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(fs::read_dir(spool.messages_dir()).unwrap().count(), 1);
    }

    #[tokio::test]
    async fn aborted_and_dropped_writers_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = Spool::open(dir.path(), 10, test_metrics()).unwrap();
        let mut w = spool.create();
        w.write(&vec![b'y'; WRITE_CHUNK + 1]).await.unwrap();
        w.abort().await;
        let mut w = spool.create();
        w.write(&vec![b'y'; WRITE_CHUNK + 1]).await.unwrap();
        drop(w);
        assert_eq!(fs::read_dir(spool.messages_dir()).unwrap().count(), 0);
    }

    async fn store(spool: &Spool, body: &[u8]) -> String {
        let mut w = spool.create();
        let id = w.id().to_owned();
        w.write(body).await.unwrap();
        w.commit(&envelope(&id)).await.unwrap();
        id
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[tokio::test]
    async fn delivered_files_are_recycled_and_overwritten_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = Spool::open(dir.path(), 10, test_metrics()).unwrap();
        let long = store(&spool, &vec![b'a'; 5000]).await;
        spool.remove(&long);
        assert_eq!(names(&dir.path().join("free")), vec![long.clone()]);
        // The next message takes that file: shorter, so the old tail must be cut.
        let short = store(&spool, b"short\r\n").await;
        assert!(names(&dir.path().join("free")).is_empty());
        assert_eq!(names(spool.messages_dir()), vec![short.clone()]);
        let mut out = Vec::new();
        copy_body(dir.path(), &short, &mut out).unwrap();
        assert_eq!(out, b"short\r\n");
        let (_, found) = Spool::open(dir.path(), 10, test_metrics()).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].envelope.id, short);
        // A streamed (large) message into a recycled file.
        spool.remove(&short);
        let big = vec![b'b'; WRITE_CHUNK + 3];
        let id = store(&spool, &big).await;
        let mut out = Vec::new();
        copy_body(dir.path(), &id, &mut out).unwrap();
        assert_eq!(out, big);
    }

    #[tokio::test]
    async fn mail_is_private_to_the_gateway_user() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = Spool::open(&dir.path().join("spool"), 10, test_metrics()).unwrap();
        let id = store(&spool, b"secret\r\n").await;
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(spool.messages_dir()), 0o700);
        assert_eq!(mode(&dir.path().join("spool/free")), 0o700);
        assert_eq!(mode(&spool.messages_dir().join(&id)), 0o600);
        // A spool left by an older version with wider modes is made private, and so is
        // a recycled file when it is reused.
        drop(spool);
        let open_up = |p: &Path, m| fs::set_permissions(p, fs::Permissions::from_mode(m)).unwrap();
        open_up(&dir.path().join("spool/messages"), 0o755);
        open_up(&dir.path().join("spool/messages").join(&id), 0o644);
        let (spool, _) = Spool::open(&dir.path().join("spool"), 10, test_metrics()).unwrap();
        assert_eq!(mode(spool.messages_dir()), 0o700);
        spool.remove(&id);
        let next = store(&spool, b"next\r\n").await;
        assert!(names(&dir.path().join("spool/free")).is_empty());
        assert_eq!(mode(&spool.messages_dir().join(next)), 0o600);
    }

    #[tokio::test]
    async fn recycling_is_bounded_by_count_and_size() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = Spool::open(dir.path(), 1, test_metrics()).unwrap();
        let big = store(&spool, &vec![b'x'; RECYCLE_MAX_LEN as usize]).await;
        let a = store(&spool, b"a\r\n").await;
        let b = store(&spool, b"b\r\n").await;
        for id in [&big, &a, &b] {
            spool.remove(id);
        }
        // Too big to keep; then room for one.
        assert_eq!(names(&dir.path().join("free")), vec![a.clone()]);
        assert!(names(spool.messages_dir()).is_empty());
        // Reopened with no room, the pool is emptied.
        drop(spool);
        let (spool, _) = Spool::open(dir.path(), 0, test_metrics()).unwrap();
        assert!(names(&dir.path().join("free")).is_empty());
        let c = store(&spool, b"c\r\n").await;
        spool.remove(&c);
        assert!(names(&dir.path().join("free")).is_empty());
    }

    #[tokio::test]
    async fn a_whole_old_message_under_a_new_name_is_not_recovered() {
        // What a crash leaves when a recycled file was renamed to a new ID but none of
        // the new content reached the disk.
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = Spool::open(dir.path(), 10, test_metrics()).unwrap();
        let old = store(&spool, b"old\r\n").await;
        fs::rename(
            spool.messages_dir().join(&old),
            spool.messages_dir().join("NEWID"),
        )
        .unwrap();
        assert!(list(dir.path()).unwrap().is_empty());
        let (_, found) = Spool::open(dir.path(), 10, test_metrics()).unwrap();
        assert!(found.is_empty());
        assert!(names(spool.messages_dir()).is_empty());
    }

    #[test]
    fn ids_are_unique_and_ordered() {
        let g = IdGenerator::new();
        let a = g.next();
        let b = g.next();
        assert_ne!(a, b);
        assert_eq!(a.len(), 15);
        assert!(a[..11] <= b[..11]);
    }
}
