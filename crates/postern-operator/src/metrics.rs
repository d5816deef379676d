//! Operator metrics (prefix `postern_operator_`): reconciles, failures by reason,
//! and reconcile duration, timed by a drop guard so every exit path is counted.

use prometheus::{Encoder, HistogramVec, IntCounterVec, Registry, TextEncoder};

/// The operator's metrics.
#[derive(Clone)]
pub struct OperatorMetrics {
    registry: Registry,
    pub reconciles: IntCounterVec,
    pub failures: IntCounterVec,
    pub duration: HistogramVec,
}

impl OperatorMetrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let reconciles = IntCounterVec::new(
            prometheus::Opts::new(
                "postern_operator_reconciles_total",
                "MailRelay reconciles started.",
            ),
            &[],
        )?;
        let failures = IntCounterVec::new(
            prometheus::Opts::new(
                "postern_operator_reconcile_errors_total",
                "Failed reconciles by reason.",
            ),
            &["reason"],
        )?;
        let duration = HistogramVec::new(
            prometheus::HistogramOpts::new(
                "postern_operator_reconcile_duration_seconds",
                "Time per reconcile.",
            )
            .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &[],
        )?;
        registry.register(Box::new(reconciles.clone()))?;
        registry.register(Box::new(failures.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        Ok(Self {
            registry,
            reconciles,
            failures,
            duration,
        })
    }

    /// Counts a reconcile and times it until the guard is dropped.
    pub fn reconcile_timer(&self) -> prometheus::HistogramTimer {
        self.reconciles.with_label_values(&[] as &[&str]).inc();
        self.duration
            .with_label_values(&[] as &[&str])
            .start_timer()
    }

    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}
