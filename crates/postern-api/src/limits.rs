//! `spec.limits`: bounds on what clients may send.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Limits on clients.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LimitsSpec {
    /// Largest message in octets (default 25 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1024))]
    pub max_message_size: Option<i64>,
    /// Recipients per message (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub max_recipients: Option<i32>,
    /// Concurrent sessions per pod (default 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_sessions: Option<i32>,
    /// Concurrent sessions per client IP per pod (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_sessions_per_ip: Option<i32>,
    /// New connections one client IP may open per minute, per pod (default: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub connections_per_minute_per_client: Option<i32>,
    /// Messages one client IP may send per minute, per pod (default: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub messages_per_minute_per_client: Option<i32>,
    /// Failed AUTH attempts from one IP before it is blocked for a while (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub auth_failures_before_block: Option<i32>,
}
