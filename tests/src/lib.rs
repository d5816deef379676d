//! Black-box test support for Postern: starting the built gateway with a private
//! configuration, and the real peers it is tested against (Postfix, SMTP load).
//!
//! Peers are never faked here. When a peer is missing and `CI=true`, the helpers fail
//! the test instead of skipping it.

pub mod loadgen;
pub mod postfix;
