//! Black-box test support for Postern: starting the built gateway with a private
//! configuration (`gateway`), a byte-exact SMTP client (`smtp`) and assertions on its
//! replies (`reply`), waiting for things to happen (`wait`), the processes and ports of
//! everything started (`process`), and the real peers the gateway is tested against
//! (`peers`; Postfix and smtp-sink in `postfix`, Unbound in `dns`, Prometheus in
//! `prometheus`, Kubernetes in `kube`, SMTP load in `loadgen`).
//!
//! Peers are never faked here. A missing peer fails the test with the command that
//! installs it; nothing is skipped.

pub mod bench;
pub mod dns;
pub mod gateway;
pub mod kube;
pub mod ledger;
pub mod loadgen;
pub mod peers;
pub mod postfix;
pub mod process;
pub mod prometheus;
pub mod reply;
pub mod secrets;
pub mod smtp;
pub mod smtplib;
pub mod wait;

/// A file of this repository, by its path from the repository's root.
pub fn repo_file(rel: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(rel)
}

/// The text of a file of this repository (e.g. `docs/quickstart.md`).
pub fn repo_text(rel: &str) -> String {
    let path = repo_file(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}
