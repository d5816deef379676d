//! The relay rule: Postern has no local mailboxes, so every recipient is relaying.
//! A recipient is accepted only from an authenticated user, or on a relay listener
//! from a configured trusted network (empty by default). Never an open relay.

use std::net::IpAddr;

use postern_config::{ListenerKind, RelayConfig};

use super::Refusal;

/// Whether this session may relay to `recipient`.
pub fn may_relay(
    kind: ListenerKind,
    authenticated: bool,
    client: IpAddr,
    relay: &RelayConfig,
    recipient: &str,
) -> Result<(), Refusal> {
    if authenticated || (kind == ListenerKind::Relay && relay.is_trusted(client)) {
        Ok(())
    } else {
        Err(Refusal::RelayDenied {
            recipient: recipient.to_owned(),
        })
    }
}
