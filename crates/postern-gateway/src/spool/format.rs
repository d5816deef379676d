//! The message file format, and nothing else: no paths, no file system calls. Every
//! function here works on bytes or on any `Read`/`Seek`, so recovery, the writer and
//! the admin reads share one definition of a valid file.
//!
//! ```text
//! body (as received, Received header first) | envelope (JSON) | footer (45 octets)
//! footer = "\nPOSTERN1 " <body length: 16 hex> " " <envelope length: 8 hex> " "
//!          <CRC-32 of body and envelope: 8 hex> "\n"
//! ```

use std::io::{self, Read, Seek, SeekFrom, Write};

use super::{Envelope, SpooledMessage};

/// Length of the footer that ends every message file.
pub(super) const FOOTER_LEN: usize = 45;
const FOOTER_MAGIC: &[u8] = b"\nPOSTERN1 ";
/// Read buffer of the CRC loop.
const READ_CHUNK: usize = 64 * 1024;

/// The fields of a footer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Footer {
    /// Content length in octets.
    pub body_len: u64,
    /// Envelope length in octets.
    pub env_len: u32,
    /// CRC-32 of content and envelope.
    pub crc: u32,
}

impl Footer {
    /// The footer as written at the end of the file.
    pub(super) fn encode(&self) -> Vec<u8> {
        let f = format!(
            "\nPOSTERN1 {:016x} {:08x} {:08x}\n",
            self.body_len, self.env_len, self.crc
        );
        debug_assert_eq!(f.len(), FOOTER_LEN);
        f.into_bytes()
    }

    /// Reads a footer; None when the octets are not one.
    pub(super) fn parse(foot: &[u8; FOOTER_LEN]) -> Option<Footer> {
        let rest = foot.strip_prefix(FOOTER_MAGIC)?;
        let text = std::str::from_utf8(rest).ok()?.strip_suffix('\n')?;
        let mut parts = text.split(' ');
        let body_len = u64::from_str_radix(parts.next()?, 16).ok()?;
        let env_len = u32::from_str_radix(parts.next()?, 16).ok()?;
        let crc = u32::from_str_radix(parts.next()?, 16).ok()?;
        Some(Footer {
            body_len,
            env_len,
            crc,
        })
    }

    /// The length of the file this footer ends.
    fn file_len(&self) -> u64 {
        self.body_len
            .saturating_add(self.env_len as u64 + FOOTER_LEN as u64)
    }
}

/// The envelope as stored in the file.
pub(super) fn encode_envelope(envelope: &Envelope) -> serde_json::Result<Vec<u8>> {
    serde_json::to_vec(envelope)
}

/// Reads a stored envelope.
pub(super) fn decode_envelope(bytes: &[u8]) -> serde_json::Result<Envelope> {
    serde_json::from_slice(bytes)
}

/// Why a file is not a valid message.
#[derive(Debug)]
pub(super) enum Invalid {
    /// Reading (or writing the copy) failed.
    Io(io::Error),
    /// The file is cut short, damaged or not the message its name says.
    Damaged(&'static str),
}

impl From<io::Error> for Invalid {
    fn from(e: io::Error) -> Self {
        Invalid::Io(e)
    }
}

/// The CRC loop: reads `footer.body_len` octets of content from `r`, copying them to
/// `out`, then the envelope. Returns whether the CRC over both matches the footer,
/// and the envelope octets.
pub(super) fn read_checked<R: Read, W: Write + ?Sized>(
    r: &mut R,
    footer: &Footer,
    out: &mut W,
) -> io::Result<(bool, Vec<u8>)> {
    let mut hasher = crc32fast::Hasher::new();
    let mut body = r.by_ref().take(footer.body_len);
    let mut chunk = vec![0u8; READ_CHUNK];
    loop {
        let n = body.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        hasher.update(&chunk[..n]);
        out.write_all(&chunk[..n])?;
    }
    let mut env = vec![0u8; footer.env_len as usize];
    r.read_exact(&mut env)?;
    hasher.update(&env);
    Ok((hasher.finalize() == footer.crc, env))
}

/// Checks a whole message file of `total` octets: footer, lengths, CRC, envelope, and
/// that the envelope's ID is `name` (the file's name). Returns the message and its
/// footer.
pub(super) fn check<F: Read + Seek>(
    file: &mut F,
    total: u64,
    name: Option<&str>,
) -> Result<(SpooledMessage, Footer), Invalid> {
    if total < FOOTER_LEN as u64 {
        return Err(Invalid::Damaged("shorter than its footer"));
    }
    let mut foot = [0u8; FOOTER_LEN];
    file.seek(SeekFrom::Start(total - FOOTER_LEN as u64))?;
    file.read_exact(&mut foot)?;
    let footer = Footer::parse(&foot).ok_or(Invalid::Damaged("no valid footer"))?;
    if footer.file_len() != total {
        return Err(Invalid::Damaged("lengths do not match the file size"));
    }
    file.seek(SeekFrom::Start(0))?;
    let (crc_ok, env) = read_checked(file, &footer, &mut io::sink())?;
    if !crc_ok {
        return Err(Invalid::Damaged("checksum mismatch"));
    }
    let envelope =
        decode_envelope(&env).map_err(|_| Invalid::Damaged("envelope is not valid JSON"))?;
    // A recycled file still holding its previous message whole (a crash before the new
    // one overwrote it) must not come back as that message.
    if name != Some(envelope.id.as_str()) {
        return Err(Invalid::Damaged("envelope belongs to another message"));
    }
    Ok((
        SpooledMessage {
            envelope,
            size: footer.body_len,
        },
        footer,
    ))
}
