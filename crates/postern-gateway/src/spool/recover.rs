//! Reading the spool back: every message file is checked against its footer and CRC
//! (see [`super::format`]). A file cut short by a crash, or whose blocks did not all
//! reach the disk, fails the check and is removed on start; it never got a 250, so the
//! client still has it.
//!
//! Everything here blocks (start-up and the CLI).

#![allow(clippy::disallowed_methods)]

use std::fs::{self, File};
use std::io;
use std::path::Path;

use super::format::{self, Footer, Invalid};
use super::{SpoolError, SpooledMessage, io_err, make_private};

/// Reads and checks every message file in `messages`; with `repair`, removes the
/// damaged ones and makes the others private. Returns the complete messages, oldest
/// first.
pub(super) fn scan(messages: &Path, repair: bool) -> Result<Vec<SpooledMessage>, SpoolError> {
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

/// Checks one open message file at `path`; returns the message and its footer.
pub(super) fn validate(
    file: &mut File,
    path: &Path,
) -> Result<(SpooledMessage, Footer), SpoolError> {
    let total = file.metadata().map_err(io_err(path))?.len();
    let name = path.file_name().and_then(|n| n.to_str());
    format::check(file, total, name).map_err(|e| invalid(e, path))
}

/// A format error about the file at `path`.
pub(super) fn invalid(e: Invalid, path: &Path) -> SpoolError {
    match e {
        Invalid::Io(source) => SpoolError::Io {
            path: path.to_owned(),
            source,
        },
        Invalid::Damaged(what) => SpoolError::Damaged {
            path: path.to_owned(),
            what,
        },
    }
}
