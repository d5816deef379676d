//! A scanner for secrets in text that must never hold them: logs, a `/metrics`
//! scrape, Kubernetes Events, a custom resource's status, a rendered ConfigMap, the
//! spool's bookkeeping.
//!
//! A secret rarely leaks verbatim. A log line that records an SMTP command holds the
//! password as the client sent it: inside an AUTH PLAIN token
//! (`base64("\0user\0password")`), or as its own base64 line in an AUTH LOGIN
//! exchange. A debug print of a buffer shows it as a byte list or in hex; a JSON log
//! escapes it; a Kubernetes object carries it in base64. So each secret is searched
//! in every form it can take:
//!
//! - raw, JSON-escaped, percent-encoded, hex (lower and upper case), and as a Rust
//!   byte list (`99, 111, 114, …`);
//! - standard and URL-safe base64, with and without padding;
//! - base64 *inside a longer blob*: base64 turns each 3 bytes into 4 characters, so
//!   the characters of a secret embedded in a longer encoded text depend on its byte
//!   offset modulo 3. For each of the 3 offsets the secret is encoded after that many
//!   filler bytes, and only the characters whose 6 bits all come from the secret are
//!   kept (the partial characters at both edges, which depend on the neighbours, are
//!   trimmed). Whatever surrounds the secret, one of the 3 needles is then a substring
//!   of the blob, for both alphabets;
//! - for a login: the AUTH PLAIN token (`base64("\0user\0password")` and, with an
//!   authorization identity, `base64("user\0user\0password")`) and the AUTH LOGIN
//!   responses (base64 of the user name, base64 of the password).
//!
//! Secrets must be at least [`MIN_SECRET_LEN`] bytes, so that every needle is long
//! enough never to match innocent text by chance. Each hit says which secret, in
//! which form, in which text, at which line; the matched bytes themselves are not
//! printed.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use anyhow::{Context, Result};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};

/// The shortest secret the scanner accepts: its trimmed base64 needles are then at
/// least 10 characters long.
pub const MIN_SECRET_LEN: usize = 8;

/// The shortest AUTH LOGIN user-name token (`base64(user)`) that is searched: a user
/// name is no secret, and the token of a short one (`bob` is `Ym9i`) would match
/// random text.
pub const MIN_LOGIN_TOKEN_LEN: usize = 8;

/// One byte string to look for.
#[derive(Debug, Clone)]
struct Needle {
    secret: String,
    form: String,
    bytes: Vec<u8>,
}

/// One secret found somewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// The text it was found in (a file path, "GET /metrics", "Event …").
    pub source: String,
    /// The secret's label, e.g. "alice's password".
    pub secret: String,
    /// The form it was in, e.g. "AUTH PLAIN token".
    pub form: String,
    /// Line number (from 1) and byte offset in the text.
    pub line: usize,
    pub offset: usize,
    /// The text around it, the match itself replaced by `[…]`.
    pub context: String,
}

impl fmt::Display for Hit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{} (byte {}): {} as {}: {}",
            self.source, self.line, self.offset, self.secret, self.form, self.context
        )
    }
}

/// Every hit, one per line, for an assertion message.
pub fn report(hits: &[Hit]) -> String {
    hits.iter()
        .map(|h| format!("  {h}\n"))
        .collect::<Vec<_>>()
        .concat()
}

/// Secrets and every form of them to search for.
#[derive(Debug, Clone, Default)]
pub struct SecretScanner {
    needles: Vec<Needle>,
    /// Needle indices by their first 4 bytes: one pass over a text finds them all.
    by_prefix: HashMap<[u8; 4], Vec<usize>>,
}

impl SecretScanner {
    pub fn new() -> Self {
        Self::default()
    }

    /// A secret (a password, a token) under a label that says what it is.
    ///
    /// Panics if it is shorter than [`MIN_SECRET_LEN`] bytes.
    pub fn secret(&mut self, label: &str, value: &str) -> &mut Self {
        let v = value.as_bytes();
        assert!(
            v.len() >= MIN_SECRET_LEN,
            "secret {label:?} is shorter than {MIN_SECRET_LEN} bytes: its forms would match innocent text"
        );
        self.add(label, "raw", v.to_vec());
        let json = serde_json::to_string(value).expect("a string serializes");
        self.add(
            label,
            "JSON-escaped",
            json.as_bytes()[1..json.len() - 1].to_vec(),
        );
        self.add(label, "percent-encoded", percent_encode(v).into_bytes());
        self.add(label, "base64", STANDARD.encode(v).into_bytes());
        self.add(
            label,
            "base64 without padding",
            STANDARD_NO_PAD.encode(v).into_bytes(),
        );
        self.add(label, "URL-safe base64", URL_SAFE.encode(v).into_bytes());
        self.add(
            label,
            "URL-safe base64 without padding",
            URL_SAFE_NO_PAD.encode(v).into_bytes(),
        );
        for offset in 0..3 {
            for (alphabet, engine) in [("base64", &STANDARD), ("URL-safe base64", &URL_SAFE)] {
                self.add(
                    label,
                    &format!("{alphabet} inside a longer blob (byte offset {offset} mod 3)"),
                    aligned_base64(engine, v, offset),
                );
            }
        }
        let hex: String = v.iter().map(|b| format!("{b:02x}")).collect();
        self.add(label, "hex", hex.clone().into_bytes());
        self.add(label, "upper-case hex", hex.to_uppercase().into_bytes());
        let list: Vec<String> = v.iter().map(u8::to_string).collect();
        self.add(label, "byte list", list.join(", ").into_bytes());
        self
    }

    /// A login: the password as a secret (every form of [`Self::secret`]), and the
    /// tokens an SMTP client sends with it: AUTH PLAIN (without and with an
    /// authorization identity) and AUTH LOGIN (the user name and the password, each
    /// base64 on its own line; the user name's only when that token is at least
    /// [`MIN_LOGIN_TOKEN_LEN`] characters).
    pub fn login(&mut self, label: &str, user: &str, password: &str) -> &mut Self {
        // The most specific forms first: of two needles with the same bytes the first
        // one names the hit, and a hit inside a longer one is reported as the longer.
        self.add(
            label,
            "AUTH PLAIN token",
            STANDARD
                .encode(format!("\0{user}\0{password}").as_bytes())
                .into_bytes(),
        );
        self.add(
            label,
            "AUTH PLAIN token with authorization identity",
            STANDARD
                .encode(format!("{user}\0{user}\0{password}").as_bytes())
                .into_bytes(),
        );
        self.add(
            label,
            "AUTH LOGIN password response (base64)",
            STANDARD.encode(password.as_bytes()).into_bytes(),
        );
        if STANDARD.encode(user).len() >= MIN_LOGIN_TOKEN_LEN {
            self.add(
                &format!("{label} (user name {user})"),
                "AUTH LOGIN user name response (base64): the exchange that carries the password was recorded",
                STANDARD.encode(user.as_bytes()).into_bytes(),
            );
        }
        self.secret(label, password)
    }

    /// Every (secret label, form, bytes) searched for.
    pub fn forms(&self) -> impl Iterator<Item = (&str, &str, &[u8])> {
        self.needles
            .iter()
            .map(|n| (n.secret.as_str(), n.form.as_str(), n.bytes.as_slice()))
    }

    fn add(&mut self, secret: &str, form: &str, bytes: Vec<u8>) {
        assert!(bytes.len() >= 4, "needle {form} of {secret} is too short");
        if self
            .needles
            .iter()
            .any(|n| n.secret == secret && n.bytes == bytes)
        {
            return;
        }
        let key = [bytes[0], bytes[1], bytes[2], bytes[3]];
        self.by_prefix
            .entry(key)
            .or_default()
            .push(self.needles.len());
        self.needles.push(Needle {
            secret: secret.to_owned(),
            form: form.to_owned(),
            bytes,
        });
    }

    /// Every secret in `text`, in any form. A match that lies within a longer match of
    /// the same secret (the unpadded base64 inside the padded one, the trimmed needle
    /// inside the whole token) is reported once, as the longer.
    pub fn scan(&self, source: &str, text: &[u8]) -> Vec<Hit> {
        let mut found: Vec<(usize, usize, usize)> = Vec::new(); // (start, end, needle)
        if text.len() >= 4 {
            for i in 0..=text.len() - 4 {
                let key = [text[i], text[i + 1], text[i + 2], text[i + 3]];
                if let Some(ids) = self.by_prefix.get(&key) {
                    for &id in ids {
                        let b = &self.needles[id].bytes;
                        if text[i..].starts_with(b) {
                            found.push((i, i + b.len(), id));
                        }
                    }
                }
            }
        }
        // Longest first at each start, then drop matches inside a kept one.
        found.sort_by_key(|&(s, e, id)| (s, std::cmp::Reverse(e), id));
        let mut kept: Vec<(usize, usize, usize)> = Vec::new();
        for m in found {
            let inside = kept.iter().any(|k| {
                self.needles[k.2].secret == self.needles[m.2].secret && k.0 <= m.0 && m.1 <= k.1
            });
            if !inside {
                kept.push(m);
            }
        }
        kept.into_iter()
            .map(|(start, end, id)| {
                let n = &self.needles[id];
                Hit {
                    source: source.to_owned(),
                    secret: n.secret.clone(),
                    form: n.form.clone(),
                    line: text[..start].iter().filter(|&&b| b == b'\n').count() + 1,
                    offset: start,
                    context: context(text, start, end),
                }
            })
            .collect()
    }

    /// [`Self::scan`] of a file, named by its path.
    pub fn scan_file(&self, path: &Path) -> Result<Vec<Hit>> {
        let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Ok(self.scan(&path.display().to_string(), &text))
    }
}

/// The base64 characters of `secret` placed `offset` (0..3) bytes into a longer
/// encoded blob that depend on the secret alone: characters whose 6 bits all fall
/// within the secret's bytes. The partial characters at both edges are trimmed.
pub fn aligned_base64(engine: &impl base64::Engine, secret: &[u8], offset: usize) -> Vec<u8> {
    assert!(offset < 3);
    let mut padded = vec![0u8; offset];
    padded.extend_from_slice(secret);
    let encoded = engine.encode(&padded).into_bytes();
    let first_bit = 8 * offset;
    let end_bit = 8 * (offset + secret.len());
    // Character i holds bits [6i, 6i + 6).
    let first = first_bit.div_ceil(6);
    let last = end_bit / 6; // exclusive
    encoded[first..last].to_vec()
}

fn percent_encode(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Up to 40 bytes either side of `[start, end)`, the match replaced by `[…]`, on one
/// line.
fn context(text: &[u8], start: usize, end: usize) -> String {
    let before = &text[start.saturating_sub(40)..start];
    let after = &text[end..(end + 40).min(text.len())];
    let one_line = |b: &[u8]| {
        String::from_utf8_lossy(b)
            .replace('\n', "\\n")
            .replace('\r', "\\r")
    };
    format!("…{}[…]{}…", one_line(before), one_line(after))
}

/// The texts of a gateway spool that are bookkeeping, not mail: every file outside
/// `messages/` and `free/` (delivery state, the pid file, anything else), and of each
/// message file only its envelope (the JSON between the body and the footer). Message
/// bodies and recycled files hold mail content, which is the sender's and no log.
pub fn spool_texts(spool: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut stack = vec![spool.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("{}", dir.display()))? {
            let path = entry?.path();
            let rel = path.strip_prefix(spool).unwrap_or(&path).to_path_buf();
            if path.is_dir() {
                if rel != Path::new("free") {
                    stack.push(path);
                }
                continue;
            }
            let Ok(bytes) = std::fs::read(&path) else {
                continue; // delivered and removed meanwhile
            };
            if rel.starts_with("messages") {
                let envelope = message_envelope(&bytes)
                    .with_context(|| format!("spool file {} has no footer", path.display()))?;
                out.push((format!("{} (envelope)", path.display()), envelope.to_vec()));
            } else {
                out.push((path.display().to_string(), bytes));
            }
        }
    }
    Ok(out)
}

/// The envelope of a spool message file: `body | envelope | footer`, the footer
/// `"\nPOSTERN1 " <body length: 16 hex> " " <envelope length: 8 hex> " " <crc: 8 hex> "\n"`.
fn message_envelope(file: &[u8]) -> Option<&[u8]> {
    const FOOTER: usize = 45;
    let footer = file.get(file.len().checked_sub(FOOTER)?..)?;
    let footer = std::str::from_utf8(footer)
        .ok()?
        .strip_prefix("\nPOSTERN1 ")?;
    let mut parts = footer.split(' ');
    let body = usize::from_str_radix(parts.next()?, 16).ok()?;
    let envelope = usize::from_str_radix(parts.next()?, 16).ok()?;
    file.get(body..body.checked_add(envelope)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const USER: &str = "alice";
    const PASSWORD: &str = "correct horse battery";

    fn scanner() -> SecretScanner {
        let mut s = SecretScanner::new();
        s.login("alice's password", USER, PASSWORD);
        s
    }

    fn forms_found(text: &str) -> Vec<String> {
        scanner()
            .scan("t", text.as_bytes())
            .into_iter()
            .map(|h| h.form)
            .collect()
    }

    #[test]
    fn auth_tokens_as_a_client_sends_them() {
        // Encoded by an independent implementation (Python's base64), not by the
        // scanner's own code.
        let line = "~> AUTH PLAIN AGFsaWNlAGNvcnJlY3QgaG9yc2UgYmF0dGVyeQ==\n";
        assert_eq!(forms_found(line), ["AUTH PLAIN token"]);
        let line = "C: AUTH PLAIN YWxpY2UAYWxpY2UAY29ycmVjdCBob3JzZSBiYXR0ZXJ5\n";
        assert_eq!(
            forms_found(line),
            ["AUTH PLAIN token with authorization identity"]
        );
        let exchange = "AUTH LOGIN\n334 VXNlcm5hbWU6\nYWxpY2U=\n334 UGFzc3dvcmQ6\nY29ycmVjdCBob3JzZSBiYXR0ZXJ5\n";
        let hits = scanner().scan("exchange", exchange.as_bytes());
        assert_eq!(hits.len(), 2, "{}", report(&hits));
        assert!(hits[0].form.starts_with("AUTH LOGIN user name"));
        assert_eq!((hits[0].line, hits[0].offset), (3, 28));
        assert_eq!(hits[1].form, "AUTH LOGIN password response (base64)");
        assert_eq!(hits[1].line, 5);
        assert!(!hits[1].context.contains("Y29ycmVj"), "{}", hits[1].context);
    }

    #[test]
    fn every_plain_form() {
        for (text, form) in [
            ("pass=correct horse battery;", "raw"),
            ("{\"pw\":\"correct horse battery\"}", "raw"),
            ("GET /?pw=correct%20horse%20battery", "percent-encoded"),
            ("636f727265637420686f7273652062617474657279", "hex"),
            (
                "636F727265637420686F7273652062617474657279",
                "upper-case hex",
            ),
            (
                "buf=[99, 111, 114, 114, 101, 99, 116, 32, 104, 111, 114, 115, 101, 32, 98, 97, 116, 116, 101, 114, 121]",
                "byte list",
            ),
            (
                "token Y29ycmVjdCBob3JzZSBiYXR0ZXJ5 end",
                "AUTH LOGIN password response (base64)",
            ),
        ] {
            assert_eq!(forms_found(text), [form], "{text}");
        }
        // One character short is not the secret.
        assert!(forms_found("636f727265637420686f727365206261747465727").is_empty());
        let mut s = SecretScanner::new();
        s.secret("quoted", "a \"quoted\" pass\\word");
        let hits = s.scan("json", br#"{"msg":"a \"quoted\" pass\\word"}"#);
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].form, "JSON-escaped");
        // Characters that differ between the two base64 alphabets.
        let mut s = SecretScanner::new();
        // A run of `~` (0x7e) encodes to "fn5+" at any alignment: '+' or '-' by alphabet.
        s.secret("binary-ish", "\u{fb}\u{ff}~~~~~~~>?");
        let value = "\u{fb}\u{ff}~~~~~~~>?".as_bytes();
        for (engine, form) in [
            (&STANDARD, "base64"),
            (&URL_SAFE, "URL-safe base64"),
            (&STANDARD_NO_PAD, "base64 without padding"),
            (&URL_SAFE_NO_PAD, "URL-safe base64 without padding"),
        ] {
            let text = format!("x {} y", engine.encode(value));
            let hits = s.scan("t", text.as_bytes());
            assert_eq!(hits.len(), 1, "{form}: {}", report(&hits));
            assert_eq!(hits[0].form, form, "{text}");
        }
    }

    /// A secret inside any base64 blob is found, at every byte offset and with any
    /// neighbours, in both alphabets, padded or not.
    #[test]
    fn inside_longer_base64_blobs_at_every_alignment() {
        let mut s = SecretScanner::new();
        s.secret("the token", "tok-\u{3b1}\u{3b2}~~~~~~~~~-0123456789");
        let secret = "tok-\u{3b1}\u{3b2}~~~~~~~~~-0123456789".as_bytes();
        let mut alignments = std::collections::BTreeSet::new();
        for prefix_len in 0..9 {
            for suffix_len in 0..4 {
                for fill in [0u8, 0xff, b'A', 0x3e] {
                    let mut blob = vec![fill; prefix_len];
                    blob.extend_from_slice(secret);
                    blob.extend(std::iter::repeat_n(fill ^ 0x55, suffix_len));
                    for engine in [&STANDARD, &URL_SAFE, &STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
                        let text = format!("data: {}\n", engine.encode(&blob));
                        let hits = s.scan("blob", text.as_bytes());
                        assert_eq!(
                            hits.len(),
                            1,
                            "prefix {prefix_len}, suffix {suffix_len}, fill {fill}: {text}{}",
                            report(&hits)
                        );
                        if hits[0].form.contains("inside a longer blob") {
                            alignments.insert(hits[0].form.clone());
                        }
                    }
                }
            }
        }
        // All three offsets of both alphabets were needed.
        assert_eq!(alignments.len(), 6, "{alignments:?}");
        // And an AUTH PLAIN token of that password, with an unknown user name.
        let token = STANDARD.encode(format!(
            "\0someone-else\0{}",
            "tok-\u{3b1}\u{3b2}~~~~~~~~~-0123456789"
        ));
        assert_eq!(s.scan("token", token.as_bytes()).len(), 1);
    }

    #[test]
    fn trimmed_needles_depend_on_the_secret_only() {
        for offset in 0..3 {
            let a = aligned_base64(&STANDARD, b"abcdefghij", offset);
            assert!(a.len() >= 10, "{}", String::from_utf8_lossy(&a));
            for fill in [0u8, 0x01, 0x80, 0xff] {
                for tail in [0u8, 0x7f, 0xff] {
                    let mut blob = vec![fill; offset + 3];
                    blob.extend_from_slice(b"abcdefghij");
                    blob.push(tail);
                    let e = STANDARD.encode(&blob).into_bytes();
                    assert!(e.windows(a.len()).any(|w| w == a.as_slice()));
                }
            }
        }
    }

    #[test]
    fn clean_text_has_no_hits() {
        let mut s = scanner();
        s.login("bob's password", "bob", "bobs secret");
        s.secret("smarthost password", "sm4rthost-Pa55-q7Zx");
        let log = concat!(
            "2026-11-30T15:00:00Z INFO postern_gateway::session::auth: authenticated client=127.0.0.1:41234 user=alice mechanism=\"PLAIN\"\n",
            "2026-11-30T15:00:01Z INFO postern_gateway::session::auth: authentication failed client=127.0.0.1:41236 mechanism=\"LOGIN\"\n",
            "{\"level\":\"INFO\",\"fields\":{\"message\":\"delivered\",\"queue_id\":\"4F2kQ9xZpL\",\"status\":\"sent\"}}\n",
            "postern_auth_attempts_total{mechanism=\"PLAIN\",result=\"success\"} 3\n",
            "data: AGJvYgBub3QgaXQ= YWxpY2U6bm90IGl0 334 VXNlcm5hbWU6 334 UGFzc3dvcmQ6\n",
            "correct horse battering ram; bobs secre; sm4rthost-Pa55-q7Z\n",
        );
        let hits = s.scan("log", log.as_bytes());
        assert!(hits.is_empty(), "{}", report(&hits));
        // The same log with one secret planted is not clean.
        let dirty = format!("{log}retrying with sm4rthost-Pa55-q7Zx\n");
        let hits = s.scan("log", dirty.as_bytes());
        assert_eq!(hits.len(), 1, "{}", report(&hits));
        assert_eq!(
            (hits[0].line, hits[0].secret.as_str()),
            (7, "smarthost password")
        );
        assert!(!hits[0].to_string().contains("sm4rthost-Pa55-q7Zx"));
    }

    #[test]
    #[should_panic(expected = "shorter than")]
    fn short_secrets_are_refused() {
        SecretScanner::new().secret("pin", "1234");
    }

    #[test]
    fn spool_envelopes_are_cut_out_of_message_files() {
        let body = b"Subject: x\r\n\r\nbody\r\n";
        let envelope = br#"{"id":"ABC","sender":"a@example.com"}"#;
        let mut file = body.to_vec();
        file.extend_from_slice(envelope);
        file.extend_from_slice(
            format!(
                "\nPOSTERN1 {:016x} {:08x} {:08x}\n",
                body.len(),
                envelope.len(),
                0
            )
            .as_bytes(),
        );
        assert_eq!(message_envelope(&file), Some(&envelope[..]));
        assert_eq!(message_envelope(b"short"), None);
    }
}
