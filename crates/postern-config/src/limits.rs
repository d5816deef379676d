//! `[limits]`: bounds on every input.

use serde::{Deserialize, Serialize};

/// What to do with a bare CR or bare LF in commands or message data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BareLineEndings {
    /// Refuse the command or message (RFC 5321 section 2.3.8).
    Refuse,
    /// Treat the bare CR or LF as CRLF. End of data is still only CRLF.CRLF.
    Normalize,
}

/// Bounds on every input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest message accepted, in octets (advertised in SIZE, enforced during transfer).
    pub max_message_size: u64,
    /// Recipients per message; more get 452 4.5.3.
    pub max_recipients: usize,
    /// Concurrent sessions over all listeners.
    pub max_sessions: usize,
    /// Concurrent sessions from one client IP.
    pub max_sessions_per_ip: usize,
    /// Refused commands in one session after which it is closed with 421 (like Postfix's
    /// smtpd_hard_error_limit).
    pub max_errors: u32,
    /// Bare CR or LF handling.
    pub bare_line_endings: BareLineEndings,
    /// New connections one client IP may open per minute; more get 421 4.7.0 (like
    /// Postfix's smtpd_client_connection_rate_limit). 0: no limit.
    pub connections_per_minute_per_ip: u32,
    /// Messages (MAIL commands) one client IP may send per minute; more get 450 4.7.1
    /// (like Postfix's smtpd_client_message_rate_limit). 0: no limit.
    pub messages_per_minute_per_ip: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_message_size: 25 * 1024 * 1024,
            max_recipients: 100,
            max_sessions: 1000,
            max_sessions_per_ip: 50,
            max_errors: 20,
            bare_line_endings: BareLineEndings::Refuse,
            connections_per_minute_per_ip: 0,
            messages_per_minute_per_ip: 0,
        }
    }
}
