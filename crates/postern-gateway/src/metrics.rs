//! Prometheus metrics (prefix `postern_`). Labels are bounded on purpose: never an
//! address, an IP or a user name; destination domains only from the configured short
//! list (`metrics.destination_domains`), everything else is "other". A mail system's
//! natural label values (recipients, clients) are unbounded, and one stray label
//! would make every scrape grow with the traffic.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Every metric the gateway exports.
pub struct Metrics {
    registry: Registry,
    destinations: Vec<String>,
    pub connections: IntCounterVec,
    pub sessions_active: IntGaugeVec,
    pub tls_handshakes: IntCounterVec,
    pub auth_attempts: IntCounterVec,
    pub commands_refused: IntCounterVec,
    pub messages_received: IntCounterVec,
    pub messages_refused: IntCounterVec,
    pub received_bytes: IntCounterVec,
    pub spool_commit_seconds: Histogram,
    pub spool_commit_batch: Histogram,
    pub spool_free_bytes: IntGauge,
    pub queue_messages: IntGaugeVec,
    pub queue_recipients: IntGaugeVec,
    pub queue_oldest_age: IntGauge,
    pub outbound_open: IntGaugeVec,
    pub delivery_attempts: IntCounterVec,
    pub delivery_latency: HistogramVec,
    pub outbound_connections: IntCounterVec,
    pub dns_lookups: IntCounterVec,
    pub dsns: IntCounter,
}

type Result<T> = std::result::Result<T, prometheus::Error>;

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> Result<IntCounterVec> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> Result<IntGaugeVec> {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(g.clone()))?;
    Ok(g)
}

fn histogram(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: Vec<f64>,
) -> Result<HistogramVec> {
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)?;
    r.register(Box::new(h.clone()))?;
    Ok(h)
}

impl Metrics {
    /// Registers every metric.
    pub fn new(destinations: &[String]) -> Result<Self> {
        let r = Registry::new();
        #[cfg(target_os = "linux")]
        {
            let _ = r.register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ));
        }
        let latency_buckets = vec![
            0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0,
        ];
        let commit_buckets = vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
        ];
        let batch_buckets = vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];
        let m = Self {
            connections: counter(
                &r,
                "postern_connections_total",
                "SMTP connections by listener and whether they were accepted or refused (and why).",
                &["listener", "result", "reason"],
            )?,
            sessions_active: gauge(
                &r,
                "postern_sessions_active",
                "SMTP sessions open now.",
                &["listener"],
            )?,
            tls_handshakes: counter(
                &r,
                "postern_tls_handshakes_total",
                "Server TLS handshakes by result (ok, failed, timeout, aborted: closed before a ClientHello, such as a TCP health check) and protocol version.",
                &["listener", "result", "version"],
            )?,
            auth_attempts: counter(
                &r,
                "postern_auth_attempts_total",
                "SMTP AUTH attempts by mechanism and result.",
                &["mechanism", "result"],
            )?,
            commands_refused: counter(
                &r,
                "postern_commands_refused_total",
                "Commands refused, by SMTP reply code.",
                &["code"],
            )?,
            messages_received: counter(
                &r,
                "postern_messages_received_total",
                "Messages accepted (durable, 250 sent), by listener.",
                &["listener"],
            )?,
            messages_refused: counter(
                &r,
                "postern_messages_refused_total",
                "Messages refused at the end of data, by reason.",
                &["reason"],
            )?,
            received_bytes: counter(
                &r,
                "postern_received_bytes_total",
                "Octets of accepted message content, by listener.",
                &["listener"],
            )?,
            spool_commit_seconds: histogram(
                &r,
                "postern_spool_commit_duration_seconds",
                "Time to make one batch of messages durable (syncfs).",
                &[],
                commit_buckets,
            )?
            .with_label_values(&[] as &[&str]),
            spool_commit_batch: histogram(
                &r,
                "postern_spool_commit_batch_size",
                "Messages made durable by one syncfs (group commit).",
                &[],
                batch_buckets,
            )?
            .with_label_values(&[] as &[&str]),
            spool_free_bytes: gauge(
                &r,
                "postern_spool_free_bytes",
                "Free space on the spool's filesystem.",
                &[],
            )?
            .with_label_values(&[] as &[&str]),
            queue_messages: gauge(
                &r,
                "postern_queue_messages",
                "Queued messages by state (ready: due now or being delivered; deferred: waiting for a retry; held: delivery mode hold).",
                &["state"],
            )?,
            queue_recipients: gauge(
                &r,
                "postern_queue_recipients",
                "Pending recipients of queued messages by state.",
                &["state"],
            )?,
            queue_oldest_age: gauge(
                &r,
                "postern_queue_oldest_message_age_seconds",
                "Age of the oldest queued message.",
                &[],
            )?
            .with_label_values(&[] as &[&str]),
            outbound_open: gauge(
                &r,
                "postern_outbound_connections_open",
                "Outbound connections open (or opening) by state: busy delivering, or idle and kept for the destination's next messages.",
                &["state"],
            )?,
            delivery_attempts: counter(
                &r,
                "postern_delivery_attempts_total",
                "Per-recipient delivery results by outcome, enhanced status class and destination.",
                &["result", "status_class", "destination"],
            )?,
            delivery_latency: histogram(
                &r,
                "postern_delivery_latency_seconds",
                "Time from acceptance to delivery, per delivered recipient.",
                &["destination"],
                latency_buckets,
            )?,
            outbound_connections: counter(
                &r,
                "postern_outbound_connections_total",
                "Outbound SMTP sessions by result (ok, failed, tls_failed: an opportunistic handshake failed and plain text was tried next), TLS used (none, opportunistic, verified) and destination.",
                &["result", "tls", "destination"],
            )?,
            dns_lookups: counter(
                &r,
                "postern_dns_lookups_total",
                "DNS lookups by record type and result.",
                &["type", "result"],
            )?,
            dsns: counter(
                &r,
                "postern_dsn_generated_total",
                "Delivery status notifications (bounces) queued to senders.",
                &[],
            )?
            .with_label_values(&[] as &[&str]),
            destinations: destinations.iter().map(|d| d.to_lowercase()).collect(),
            registry: r,
        };
        for l in ["relay", "submission", "submissions"] {
            m.sessions_active.with_label_values(&[l]);
            m.messages_received.with_label_values(&[l]);
            m.received_bytes.with_label_values(&[l]);
        }
        for s in ["ready", "deferred", "held"] {
            m.queue_messages.with_label_values(&[s]);
            m.queue_recipients.with_label_values(&[s]);
        }
        Ok(m)
    }

    /// The `destination` label for a recipient domain.
    pub fn destination<'a>(&'a self, domain: &str) -> &'a str {
        self.destinations
            .iter()
            .find(|d| d.eq_ignore_ascii_case(domain))
            .map(String::as_str)
            .unwrap_or(if domain == "smarthost" {
                "smarthost"
            } else {
                "other"
            })
    }

    /// The text exposition format.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_and_renders() {
        let m = Metrics::new(&["Example.com".to_owned()]).unwrap();
        m.delivery_attempts
            .with_label_values(&["delivered", "2", m.destination("example.com")])
            .inc();
        m.delivery_attempts
            .with_label_values(&["delivered", "2", m.destination("elsewhere.test")])
            .inc();
        let text = String::from_utf8(m.render()).unwrap();
        assert!(text.contains("postern_delivery_attempts_total{destination=\"example.com\",result=\"delivered\",status_class=\"2\"} 1"), "{text}");
        assert!(text.contains("destination=\"other\""), "{text}");
        assert!(
            text.contains("postern_queue_messages{state=\"deferred\"} 0"),
            "{text}"
        );
    }
}
