//! Whether a new connection is served: checked in this order, the first refusal wins
//! (a blocked client learns nothing more; the connection rate counts even when the
//! session limits would refuse).

use super::refusal::Closing;

/// What the listener knows about a new connection.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    /// The client is blocked after repeated authentication failures.
    pub blocked: bool,
    /// The connection is within the client's per-minute connection rate.
    pub within_rate: bool,
    /// A session slot is free.
    pub session_free: bool,
    /// The client's address has a session slot left.
    pub client_session_free: bool,
}

/// The first reason to refuse the connection, if any.
pub fn admit(a: Arrival) -> Result<(), Closing> {
    if a.blocked {
        Err(Closing::Blocked)
    } else if !a.within_rate {
        Err(Closing::ConnectionRate)
    } else if !a.session_free {
        Err(Closing::TooManySessions)
    } else if !a.client_session_free {
        Err(Closing::TooManySessionsFromClient)
    } else {
        Ok(())
    }
}
