//! Who may do what: the rules a session and a listener apply, as pure functions over
//! what they know (listener kind, TLS, the authenticated user, the client address,
//! the configuration), and every refusal as a [`Refusal`] that gives both the SMTP
//! reply and the label it is counted under.
//!
//! - [`admission`]: whether a new connection is served at all (blocked clients,
//!   connection rate, session limits).
//! - [`relay`]: the relay rule (never an open relay).
//! - [`sender`]: TLS and AUTH before mail on submission listeners; the sender rule.
//! - [`rate`]: per-client sliding-minute counters.
//!
//! Nothing here does I/O or touches a socket.

pub mod admission;
pub mod rate;
pub mod refusal;
pub mod relay;
pub mod sender;

pub use refusal::Refusal;

#[cfg(test)]
mod tests;
