//! What types alone cannot check.

use crate::{ConfigError, DeliveryMode, GatewayConfig};

impl GatewayConfig {
    /// Checks what types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.hostname.is_empty()
            || !self
                .hostname
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        {
            return bad(format!(
                "hostname {:?} must be a non-empty DNS name (letters, digits, '.', '-')",
                self.hostname
            ));
        }
        if self.listeners.is_empty() {
            return bad("at least one listener is needed".into());
        }
        for (i, a) in self.listeners.iter().enumerate() {
            if self.listeners[..i].iter().any(|b| b.address == a.address) {
                return bad(format!("two listeners bind {}", a.address));
            }
        }
        if self.limits.max_message_size < 1024 {
            return bad("limits.max_message_size must be at least 1024 octets".into());
        }
        if self.limits.max_recipients == 0 {
            return bad("limits.max_recipients must be at least 1".into());
        }
        if self.limits.max_sessions == 0 || self.limits.max_sessions_per_ip == 0 {
            return bad("limits.max_sessions and max_sessions_per_ip must be at least 1".into());
        }
        if self.auth.block_after_failures == 0 {
            return bad("auth.block_after_failures must be at least 1".into());
        }
        if self.delivery.mode == DeliveryMode::Smarthost && self.delivery.smarthost.is_none() {
            return bad("delivery.mode = \"smarthost\" needs a [delivery.smarthost] table".into());
        }
        let r = &self.delivery.retry;
        // Written so that a NaN factor fails too.
        if r.factor.is_nan()
            || r.factor < 1.0
            || !(0.0..1.0).contains(&r.jitter)
            || r.initial.is_zero()
            || r.max < r.initial
        {
            return bad("delivery.retry: factor >= 1, 0 <= jitter < 1, 0 < initial <= max".into());
        }
        let l = &self.delivery.limits;
        if l.max_connections == 0
            || l.max_connections_per_destination == 0
            || l.max_messages_per_connection == 0
            || l.max_recipients_per_transaction == 0
        {
            return bad("delivery.limits values must be at least 1".into());
        }
        if self.delivery.dns.attempts == 0 {
            return bad("delivery.dns.attempts must be at least 1".into());
        }
        for (name, d) in [
            ("timeouts.command", self.timeouts.command),
            ("timeouts.data", self.timeouts.data),
            ("timeouts.tls_handshake", self.timeouts.tls_handshake),
            ("tls.reload_interval", self.tls.reload_interval),
            ("auth.reload_interval", self.auth.reload_interval),
        ] {
            if d.is_zero() {
                return bad(format!("{name} must be longer than zero"));
            }
        }
        Ok(())
    }
}
