//! What the `postern-gateway queue` commands do to a spool directory, with or without
//! a gateway running on it. Everything here blocks: for the CLI only, never from
//! async code.

#![allow(clippy::disallowed_methods)]

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::format::read_checked;
use super::recover::{scan, validate};
use super::{Layout, SpoolError, SpooledMessage, StateStore, id, io_err};

/// Lists complete messages, oldest first, without changing anything.
pub fn list(dir: &Path) -> Result<Vec<SpooledMessage>, SpoolError> {
    scan(&Layout::new(dir).messages(), false)
}

/// The delivery records of the spool at `dir` (read them with
/// [`StateStore::read_blocking`]).
pub fn states(dir: &Path) -> StateStore {
    StateStore::new(Layout::new(dir).state())
}

/// Copies the content of message `id` to `out`. The file is checked first, and the
/// CRC again over what was copied: a message delivered (and its file reused) while it
/// is read gives an error rather than the wrong content.
pub fn show(dir: &Path, id: &str, out: &mut impl Write) -> Result<(), SpoolError> {
    if !id::is_valid(id) {
        return Err(SpoolError::NotFound(id.to_owned()));
    }
    let path = Layout::new(dir).message(id);
    let mut file = File::open(&path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => SpoolError::NotFound(id.to_owned()),
        _ => SpoolError::Io {
            path: path.clone(),
            source: e,
        },
    })?;
    let (_, footer) = validate(&mut file, &path)?;
    file.seek(SeekFrom::Start(0)).map_err(io_err(&path))?;
    let (crc_ok, _) = read_checked(&mut file, &footer, out).map_err(io_err(&path))?;
    if !crc_ok {
        return Err(SpoolError::Damaged {
            path,
            what: "changed while being read (delivered meanwhile)",
        });
    }
    Ok(())
}

/// Removes message `id` and its delivery record. A running gateway forgets the
/// message at its next flush.
pub fn delete(dir: &Path, id: &str) -> Result<(), SpoolError> {
    if !id::is_valid(id) {
        return Err(SpoolError::InvalidId(id.to_owned()));
    }
    let layout = Layout::new(dir);
    let path = layout.message(id);
    std::fs::remove_file(&path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => SpoolError::NotFound(id.to_owned()),
        _ => SpoolError::Io { path, source: e },
    })?;
    StateStore::new(layout.state()).remove_blocking(id);
    Ok(())
}

/// The file holding the process ID of the gateway that runs on the spool at `dir`.
pub fn pid_file(dir: &Path) -> PathBuf {
    Layout::new(dir).pid_file()
}
