//! The real programs the tests run against: finding them ([`require`]), a scratch
//! directory for their files ([`scratch_dir`]), and running the command-line clients
//! (swaks, openssl s_client, python3) with their whole transcript as the result.
//! Servers are started by their own modules (`postfix`, `dns`, `prometheus`, `kube`)
//! on the ports and processes of [`crate::process`].
//!
//! A missing peer fails the test with the command that installs it; nothing is
//! skipped.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use anyhow::{Context, Result, anyhow};
use tempfile::TempDir;

/// Where peers keep their files ([`scratch_dir`]): in /var so Postfix's `maillog_file`
/// is allowed there, on disk so fsync costs what it costs.
pub const BASE_DIR: &str = "/var/tmp/postern-tests";

/// What to tell someone whose machine lacks a peer.
pub const INSTALL_HINT: &str =
    "install the test peers with `sudo tests/scripts/install-peers.sh` (Debian/Ubuntu)";

/// sbin directories are often missing from a non-login PATH, and Postfix lives there.
const FALLBACK_DIRS: &[&str] = &["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/sbin"];

/// Finds `cmd` on PATH (or in the sbin directories) and returns its full path; when it
/// is missing the error says how to install it, so a test without its peer fails
/// loudly instead of passing by skipping.
pub fn require(cmd: &str) -> Result<PathBuf> {
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path_var)
        .chain(FALLBACK_DIRS.iter().map(PathBuf::from))
        .collect::<Vec<_>>();
    dirs.iter()
        .map(|d| d.join(cmd))
        .find(|p| p.is_file())
        .ok_or_else(|| anyhow!("`{cmd}` is not installed: {INSTALL_HINT}"))
}

/// A fresh directory under [`BASE_DIR`], removed on drop (kept with
/// `POSTERN_KEEP_PEERS=1`, for a post-mortem).
pub fn scratch_dir(prefix: &str) -> Result<TempDir> {
    std::fs::create_dir_all(BASE_DIR).with_context(|| format!("creating {BASE_DIR}"))?;
    let mut dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(BASE_DIR)
        .with_context(|| format!("creating a directory in {BASE_DIR}"))?;
    dir.disable_cleanup(keep_peers());
    Ok(dir)
}

/// Whether `POSTERN_KEEP_PEERS=1` asks to keep the peers' directories.
pub fn keep_peers() -> bool {
    std::env::var_os("POSTERN_KEEP_PEERS").is_some_and(|v| v == "1")
}

/// Runs `cmd` to completion with `input` on its standard input (written from a thread,
/// so a large input cannot deadlock against full pipes); its output, whatever the exit
/// status.
pub fn output(cmd: &mut Command, input: &[u8]) -> Result<Output> {
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {shown}"))?;
    let mut stdin = child.stdin.take().context("no stdin")?;
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child
        .wait_with_output()
        .with_context(|| format!("running {shown}"))?;
    writer
        .join()
        .map_err(|_| anyhow!("the stdin writer of {shown} panicked"))?
        .with_context(|| format!("writing to {shown}"))?;
    Ok(out)
}

/// Runs a client program `cmd` with `input` on its standard input; whether it
/// succeeded, and its standard output followed by its standard error.
pub fn transcript(cmd: &mut Command, input: &[u8]) -> (bool, String) {
    let out = output(cmd, input).unwrap_or_else(|e| panic!("{e:#}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// swaks, the mail admin's SMTP test tool, run against one server.
#[derive(Debug, Clone)]
pub struct Swaks {
    args: Vec<String>,
}

impl Swaks {
    /// `swaks --server SERVER` with whitespace-separated `flags` (e.g. `--tls --auth
    /// PLAIN`).
    pub fn new(server: impl ToString, flags: &str) -> Self {
        let mut args = vec!["--server".to_owned(), server.to_string()];
        args.extend(flags.split_whitespace().map(str::to_owned));
        Self { args }
    }

    /// `--auth-user USER --auth-password PASSWORD`.
    pub fn login(self, user: &str, password: &str) -> Self {
        self.arg("--auth-user", user)
            .arg("--auth-password", password)
    }

    /// `--from FROM --to TO` (TO may list several recipients, comma-separated).
    pub fn envelope(self, from: &str, to: &str) -> Self {
        self.arg("--from", from).arg("--to", to)
    }

    /// An option with a value that may hold spaces, e.g. `--header "Subject: x"`.
    pub fn arg(mut self, option: &str, value: &str) -> Self {
        self.args.extend([option.to_owned(), value.to_owned()]);
        self
    }

    /// Runs it; whether it succeeded, and its transcript.
    pub fn run(&self) -> (bool, String) {
        transcript(
            Command::new(require("swaks").unwrap()).args(&self.args),
            b"",
        )
    }
}

/// The queue ID in a transcript's `250 … queued as ID` line.
pub fn queued_id(transcript: &str) -> String {
    transcript
        .lines()
        .find_map(|l| l.split("queued as ").nth(1))
        .unwrap_or_else(|| panic!("no queue id in:\n{transcript}"))
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn require_names_the_install_script() {
        let err = require("no-such-peer-binary").unwrap_err().to_string();
        assert!(err.contains("install-peers.sh"), "{err}");
        assert!(require("postfix").unwrap().is_absolute());
    }
}
