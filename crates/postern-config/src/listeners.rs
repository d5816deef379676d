//! `[[listeners]]`: the SMTP listeners and what each is for.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// What a listener is for; decides TLS and AUTH behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerKind {
    /// Port 25 style: relay for trusted networks only; STARTTLS offered; AUTH after STARTTLS.
    Relay,
    /// Port 587 (RFC 6409): STARTTLS offered; AUTH and MAIL only after TLS; AUTH required.
    Submission,
    /// Port 465 (RFC 8314): implicit TLS; AUTH required.
    Submissions,
}

impl ListenerKind {
    /// A short, stable name for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ListenerKind::Relay => "relay",
            ListenerKind::Submission => "submission",
            ListenerKind::Submissions => "submissions",
        }
    }
}

/// One SMTP listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// relay, submission or submissions.
    pub kind: ListenerKind,
    /// Address and port to bind, e.g. "0.0.0.0:587" or "[::]:587".
    pub address: SocketAddr,
}

impl ListenerConfig {
    pub fn new(kind: ListenerKind, address: SocketAddr) -> Self {
        Self { kind, address }
    }
}
