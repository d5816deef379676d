//! Black-box test support for Postern: starting the built gateway with a private
//! configuration (`gateway`), a byte-exact SMTP client (`smtp`), and the real peers it
//! is tested against (Postfix and smtp-sink in `postfix`, SMTP load in `loadgen`).
//!
//! Peers are never faked here. A missing peer fails the test with the command that
//! installs it; nothing is skipped.

pub mod bench;
pub mod dns;
pub mod gateway;
pub mod kube;
pub mod ledger;
pub mod loadgen;
pub mod postfix;
pub mod prometheus;
pub mod secrets;
pub mod smtp;
