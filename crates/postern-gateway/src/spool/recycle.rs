//! Reuse of the files of delivered messages.
//!
//! Up to `spool.recycle_files` of them (those of at most [`RECYCLE_MAX_LEN`] octets)
//! move to `free/`, and a new message takes one of them (renamed to its ID,
//! overwritten from the start, cut to its length at commit) instead of a new file. A
//! busy spool then neither allocates nor frees an inode or blocks per message, which
//! on ext4 is the dearest part of creating a file once many were deleted recently. A
//! recycled file cut short by a crash still holds bytes of the old message; its
//! footer, CRC or envelope ID (which must be the file's name) then fails the check,
//! and it is removed like any partial file.
//!
//! Everything here blocks; it runs on the committer thread, in `spawn_blocking` or at
//! start-up.

#![allow(clippy::disallowed_methods)]

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::{SpoolError, io_err, make_private};

/// Only files up to this size are recycled, so that the pool holds at most
/// `recycle_files` times this much space.
pub const RECYCLE_MAX_LEN: u64 = 64 * 1024;

/// The files of delivered messages kept for reuse, shared by the writers and the
/// committer.
pub(super) struct Recycler {
    /// `free/`: files of delivered messages waiting to be reused.
    free: PathBuf,
    /// Names of the files in `free/`.
    pool: Mutex<Vec<String>>,
    /// How many files `free/` may hold.
    recycle_max: usize,
}

impl Recycler {
    /// Takes stock of `free/` (which must exist): keeps up to `recycle_max` files,
    /// made private, and removes the rest.
    pub(super) fn open(free: PathBuf, recycle_max: usize) -> Result<Recycler, SpoolError> {
        let mut pool = Vec::new();
        for entry in fs::read_dir(&free).map_err(io_err(&free))? {
            let entry = entry.map_err(io_err(&free))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if pool.len() < recycle_max && entry.file_type().is_ok_and(|t| t.is_file()) {
                make_private(&entry.path()).map_err(io_err(&entry.path()))?;
                pool.push(name);
            } else {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(Recycler {
            free,
            pool: Mutex::new(pool),
            recycle_max,
        })
    }

    /// A file for a new message at `path`: a recycled one when there is one (the
    /// caller overwrites it from the start and sets its length), else a new file.
    /// Returns the file and whether it is recycled.
    pub(super) fn new_file(&self, path: &Path) -> Result<(File, bool), SpoolError> {
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
    pub(super) fn recycle(&self, path: &Path, id: &str) -> bool {
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

/// A new message file, readable and writable by the gateway's user only.
fn create_file(path: &Path) -> Result<File, SpoolError> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(path))
}
