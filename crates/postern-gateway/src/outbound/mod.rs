//! Delivery to the next hop, one concern a file:
//!
//! - [`route`]: where mail for a destination goes (smarthost or MX) and with what
//!   TLS policy; [`dns`]: MX and address resolution with hickory-resolver.
//! - [`connection`]: opening a session with one address (connect, greeting, EHLO,
//!   STARTTLS or implicit TLS, AUTH).
//! - [`transaction`]: sending one message's recipients over an open session.
//! - [`worker`]: one delivery run to a destination: hosts in order, connection reuse.
//! - [`outcome`]: what became of each recipient, as data.
//! - [`client`]: the SMTP client, I/O only; [`tls`]: client TLS settings.

pub mod client;
pub mod connection;
pub mod dns;
pub mod outcome;
pub mod route;
pub mod tls;
pub mod transaction;
pub mod worker;
