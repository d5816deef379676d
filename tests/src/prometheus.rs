//! A real Prometheus on loopback for observability tests: Debian's `prometheus` binary
//! with a private configuration and storage, scraping the given targets every second
//! (job `postern`), optionally loading rule files; plus the HTTP query API, a tiny
//! HTTP/1.0 client for it and for the gateway's own endpoint, and [`promtool`].
//!
//! A missing binary fails with the command that installs it
//! (`tests/scripts/install-peers.sh`); nothing is skipped.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use tempfile::TempDir;

use crate::peers::{require, scratch_dir};
use crate::process::{ChildGuard, SpawnGuarded, free_local_addr, start_on_free_port, wait_serving};

/// The scrape job every target belongs to.
pub const JOB: &str = "postern";

/// Path of `promtool` (shipped in Debian's `prometheus` package).
pub fn promtool() -> Result<PathBuf> {
    require("promtool")
}

/// A private Prometheus on `127.0.0.1:<port>`; stopped on drop.
#[derive(Debug)]
pub struct Prometheus {
    /// Stopped when dropped.
    _child: ChildGuard,
    addr: SocketAddr,
    log_file: PathBuf,
    // Removed on drop, after the server is stopped (fields drop after `Drop::drop`).
    _dir: TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (job [`JOB`], every second) with
    /// `rule_files` loaded (evaluated every second), and waits until it is ready.
    pub fn start(targets: &[SocketAddr], rule_files: &[&Path]) -> Result<Self> {
        let prometheus = require("prometheus")?;
        let dir = scratch_dir("prometheus-")?;
        let conf_file = dir.path().join("prometheus.yml");
        let log_file = dir.path().join("prometheus.log");
        let storage = dir.path().join("data");
        std::fs::write(&conf_file, config(targets, rule_files)?)
            .with_context(|| format!("writing {}", conf_file.display()))?;
        let (child, addr) = start_on_free_port(
            "prometheus",
            free_local_addr,
            |addr| {
                let log = std::fs::File::create(&log_file)
                    .with_context(|| format!("creating {}", log_file.display()))?;
                Command::new(&prometheus)
                    .arg(format!("--config.file={}", conf_file.display()))
                    .arg(format!("--storage.tsdb.path={}", storage.display()))
                    .arg(format!("--web.listen-address={addr}"))
                    .arg("--storage.tsdb.retention.time=1d")
                    .stdin(Stdio::null())
                    .stdout(log.try_clone()?)
                    .stderr(log)
                    .spawn_guarded()
                    .with_context(|| format!("starting {}", prometheus.display()))
            },
            |child, addr| {
                wait_serving(
                    "prometheus",
                    child,
                    addr,
                    &[log_file.as_path()],
                    Duration::from_secs(30),
                    Duration::from_millis(100),
                    || matches!(http_get(addr, "/-/ready"), Ok((200, _))),
                )
            },
        )?;
        Ok(Prometheus {
            _child: child,
            addr,
            log_file,
            _dir: dir,
        })
    }

    /// Where the web UI and API listen.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Everything Prometheus logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_file).unwrap_or_default()
    }

    /// GETs an API path (e.g. `/api/v1/targets`) and returns the JSON answer, whatever
    /// the HTTP status (errors come as `{"status":"error",...}` with a 4xx).
    pub fn api(&self, path_and_query: &str) -> Result<serde_json::Value> {
        let (status, body) = http_get(self.addr, path_and_query)?;
        serde_json::from_str(&body)
            .with_context(|| format!("GET {path_and_query}: HTTP {status}, not JSON: {body:.300}"))
    }

    /// Evaluates `expr` now with `/api/v1/query`. The answer is returned as is:
    /// `status` is `"success"` (with `data.result`) or `"error"` (with `error`, e.g. a
    /// parse error); only transport failures are errors here.
    pub fn query(&self, expr: &str) -> Result<serde_json::Value> {
        self.api(&format!("/api/v1/query?query={}", url_encode(expr)))
    }

    /// The result vector of a query that must succeed.
    pub fn query_ok(&self, expr: &str) -> Result<Vec<serde_json::Value>> {
        let v = self.query(expr)?;
        if v["status"] != "success" {
            bail!("query {expr:?} failed: {v}");
        }
        match &v["data"]["result"] {
            serde_json::Value::Array(a) => Ok(a.clone()),
            // A scalar or string result: one value.
            other => Ok(vec![other.clone()]),
        }
    }

    /// The value of a query whose result is one sample (e.g. `sum(...)`); None when
    /// the result is empty.
    pub fn value(&self, expr: &str) -> Result<Option<f64>> {
        let result = self.query_ok(expr)?;
        match result.as_slice() {
            [] => Ok(None),
            [one] => sample_value(one)
                .map(Some)
                .ok_or_else(|| anyhow!("query {expr:?}: no value in {one}")),
            many => bail!("query {expr:?}: {} series, expected one", many.len()),
        }
    }

    /// Polls `expr` until its result is not empty; returns that result.
    pub fn wait_for(&self, expr: &str, timeout: Duration) -> Result<Vec<serde_json::Value>> {
        let deadline = Instant::now() + timeout;
        loop {
            let result = self.query_ok(expr)?;
            if !result.is_empty() {
                return Ok(result);
            }
            if Instant::now() >= deadline {
                bail!("{expr:?} still has no result after {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Waits until Prometheus has scraped `target` successfully (health `up`).
    pub fn wait_for_target_up(&self, target: SocketAddr, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let instance = target.to_string();
        let mut last = String::from("not listed yet");
        loop {
            let targets = self.api("/api/v1/targets?state=active")?;
            let found = targets["data"]["activeTargets"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|t| t["labels"]["instance"] == instance.as_str());
            if let Some(t) = found {
                if t["health"] == "up" {
                    return Ok(());
                }
                last = format!("health {} ({})", t["health"], t["lastError"]);
            }
            if Instant::now() >= deadline {
                bail!("target {instance} is not up after {timeout:?}: {last}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- prometheus log ---\n{}", self.log());
        }
    }
}

/// The numeric value of one instant-vector sample (`{"metric":..,"value":[t,"v"]}`)
/// or of a scalar (`[t,"v"]`).
pub fn sample_value(sample: &serde_json::Value) -> Option<f64> {
    let pair = if sample.is_array() {
        sample
    } else {
        &sample["value"]
    };
    pair.get(1)?.as_str()?.parse().ok()
}

/// The configuration: scrape and evaluate every second.
fn config(targets: &[SocketAddr], rule_files: &[&Path]) -> Result<String> {
    let mut c = String::new();
    writeln!(
        c,
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s"
    )?;
    if !rule_files.is_empty() {
        writeln!(c, "rule_files:")?;
        for f in rule_files {
            let abs =
                std::fs::canonicalize(f).with_context(|| format!("rule file {}", f.display()))?;
            writeln!(c, "  - {:?}", abs.display().to_string())?;
        }
    }
    writeln!(
        c,
        "scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n      - targets:"
    )?;
    for t in targets {
        writeln!(c, "          - \"{t}\"")?;
    }
    Ok(c)
}

/// One HTTP/1.0 GET: the status code and the body (as text). Enough for Prometheus'
/// API and the gateway's endpoint, which both close the connection after an HTTP/1.0
/// response.
pub fn http_get(addr: SocketAddr, path_and_query: &str) -> Result<(u16, String)> {
    let mut tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("connecting to {addr}"))?;
    tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
    tcp.set_write_timeout(Some(Duration::from_secs(5)))?;
    write!(
        tcp,
        "GET {path_and_query} HTTP/1.0\r\nHost: {addr}\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    )
    .with_context(|| format!("sending a request to {addr}"))?;
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw)
        .with_context(|| format!("reading the answer to GET {path_and_query} from {addr}"))?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("GET {path_and_query} from {addr}: no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("GET {path_and_query} from {addr}: bad status line {head:.100}"))?;
    Ok((
        status,
        String::from_utf8_lossy(&raw[split + 4..]).into_owned(),
    ))
}

/// A `/metrics` endpoint's text (the gateway's, or any exporter's); an error unless 200.
pub fn scrape(addr: SocketAddr) -> Result<String> {
    let (status, body) = http_get(addr, "/metrics")?;
    if status != 200 {
        bail!("GET /metrics from {addr}: status {status}");
    }
    Ok(body)
}

/// The sum of every sample of metric `name` (any labels) in Prometheus text format.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            if !(rest.starts_with('{') || rest.starts_with(' ')) {
                return None;
            }
            l.rsplit_once(' ')?.1.parse::<f64>().ok()
        })
        .sum()
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_sum_adds_every_series_of_one_name() {
        let text = "# HELP a_total x\na_total{k=\"1\"} 2\na_total{k=\"2\"} 3.5\na_total_x 9\nb 1\n";
        assert_eq!(metric_sum(text, "a_total"), 5.5);
        assert_eq!(metric_sum(text, "b"), 1.0);
        assert_eq!(metric_sum(text, "c"), 0.0);
    }

    #[test]
    fn url_encoding_keeps_unreserved_only() {
        assert_eq!(
            url_encode(r#"sum(rate(x{a=~"b|c"}[1m])) > 0.5"#),
            "sum%28rate%28x%7Ba%3D~%22b%7Cc%22%7D%5B1m%5D%29%29%20%3E%200.5"
        );
    }

    #[test]
    fn answers_queries_and_scrapes_targets() {
        let placeholder = free_local_addr().unwrap();
        let prom = Prometheus::start(&[placeholder], &[]).unwrap();
        let v = prom.query("vector(1) + 1").unwrap();
        assert_eq!(v["status"], "success", "{v}");
        assert_eq!(prom.value("vector(1) + 1").unwrap(), Some(2.0));
        let bad = prom.query("sum(").unwrap();
        assert_eq!(bad["status"], "error", "{bad}");
        // Nothing listens on the placeholder target: it is scraped and found down.
        prom.wait_for(
            &format!("up{{job=\"{JOB}\", instance=\"{placeholder}\"}} == 0"),
            Duration::from_secs(20),
        )
        .unwrap();
        assert!(promtool().unwrap().is_absolute());
    }
}
