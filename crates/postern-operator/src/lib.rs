//! The Postern operator: turns each `MailRelay` into a running gateway (ConfigMap,
//! Secrets, TLS, StatefulSet or Deployment, Services, PodDisruptionBudget,
//! ServiceMonitor) and reports honest status.
//!
//! Layout: `config` (the gateway's config rendered from postern-config types),
//! `credentials` (hashes, stable across reconciles), `certs` (self-signed CA and
//! leaf), `names` (children's names and labels), `resources/` (one pure builder per
//! child kind), `reconcile/` (one reconcile, one module per step, status computed
//! without API calls), `controller` (watches, back-off, failure events). Builders
//! never talk to the API server.

pub mod certs;
pub mod config;
pub mod controller;
pub mod credentials;
pub mod leader;

pub mod metrics;
pub mod names;
pub mod reconcile;
pub mod resources;

/// The server-side apply field manager.
pub const FIELD_MANAGER: &str = "postern-operator";
