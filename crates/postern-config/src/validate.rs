//! What types alone cannot check. Every problem is collected, each with the path of
//! its setting, so one run of `check-config` shows them all.

use std::time::Duration;

use crate::{ConfigError, DeliveryMode, FieldError, GatewayConfig};

/// Problems found so far.
#[derive(Default)]
struct Problems(Vec<FieldError>);

impl Problems {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError::new(path, message));
    }

    /// `path` must be at least 1.
    fn at_least_one(&mut self, path: &str, value: u64) {
        if value == 0 {
            self.add(path, "must be at least 1");
        }
    }

    /// `path` must be longer than zero.
    fn non_zero(&mut self, path: &str, value: Duration) {
        if value.is_zero() {
            self.add(path, "must be longer than zero");
        }
    }
}

impl GatewayConfig {
    /// Checks what types alone cannot. The error lists every problem found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut p = Problems::default();
        if self.hostname.is_empty()
            || !self
                .hostname
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        {
            p.add(
                "hostname",
                format!(
                    "{:?} must be a non-empty DNS name (letters, digits, '.', '-')",
                    self.hostname
                ),
            );
        }
        if self.listeners.is_empty() {
            p.add("listeners", "at least one listener is needed");
        }
        // Port 0 lets the kernel choose, so several listeners may ask for it.
        for (i, a) in self.listeners.iter().enumerate() {
            if a.address.port() == 0 {
                continue;
            }
            if let Some(j) = self.listeners[..i]
                .iter()
                .position(|b| b.address == a.address)
            {
                p.add(
                    format!("listeners[{i}].address"),
                    format!("{} is bound by listeners[{j}] already", a.address),
                );
            }
        }
        p.non_zero("tls.reload_interval", self.tls.reload_interval);
        p.non_zero("auth.reload_interval", self.auth.reload_interval);
        p.at_least_one(
            "auth.block_after_failures",
            self.auth.block_after_failures.into(),
        );
        let limits = &self.limits;
        if limits.max_message_size < 1024 {
            p.add("limits.max_message_size", "must be at least 1024 octets");
        }
        p.at_least_one("limits.max_recipients", limits.max_recipients as u64);
        p.at_least_one("limits.max_sessions", limits.max_sessions as u64);
        p.at_least_one(
            "limits.max_sessions_per_ip",
            limits.max_sessions_per_ip as u64,
        );
        p.non_zero("timeouts.command", self.timeouts.command);
        p.non_zero("timeouts.data", self.timeouts.data);
        p.non_zero("timeouts.tls_handshake", self.timeouts.tls_handshake);
        self.validate_delivery(&mut p);
        if p.0.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(p.0))
        }
    }

    fn validate_delivery(&self, p: &mut Problems) {
        let d = &self.delivery;
        p.at_least_one("delivery.dns.attempts", d.dns.attempts as u64);
        if d.mode == DeliveryMode::Smarthost && d.smarthost.is_none() {
            p.add(
                "delivery.smarthost",
                "delivery.mode = \"smarthost\" needs a [delivery.smarthost] table",
            );
        }
        let r = &d.retry;
        if r.initial.is_zero() {
            p.add("delivery.retry.initial", "must be longer than zero");
        }
        if r.max < r.initial {
            p.add(
                "delivery.retry.max",
                "must not be shorter than delivery.retry.initial",
            );
        }
        // Written so that a NaN fails too.
        if r.factor.is_nan() || r.factor < 1.0 {
            p.add("delivery.retry.factor", "must be at least 1");
        }
        if !(0.0..1.0).contains(&r.jitter) {
            p.add(
                "delivery.retry.jitter",
                "must be at least 0 and less than 1",
            );
        }
        let l = &d.limits;
        for (name, value) in [
            ("max_connections", l.max_connections),
            (
                "max_connections_per_destination",
                l.max_connections_per_destination,
            ),
            ("max_messages_per_connection", l.max_messages_per_connection),
            (
                "max_recipients_per_transaction",
                l.max_recipients_per_transaction,
            ),
        ] {
            p.at_least_one(&format!("delivery.limits.{name}"), value as u64);
        }
    }
}
