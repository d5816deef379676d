//! Observability against real tools: the alert rules pass `promtool check rules` and
//! their unit tests; every alert links to its runbook section; the Grafana dashboard
//! is portable (no data source uid) and filters by instance; and end to end, a gateway
//! in MX mode (Unbound for DNS, smtp-sink as mail exchangers: one accepting, one
//! answering 4xx to RCPT, and a null-MX domain for bounces) takes a few dozen messages
//! from real clients (relay, implicit TLS with AUTH, STARTTLS with AUTH, failed AUTH)
//! while a real Prometheus scrapes it every second. Then its /metrics passes
//! `promtool check metrics`, the metrics count what happened, every dashboard panel and
//! alert expression parses and evaluates in Prometheus, the traffic panels show data,
//! the loaded rules evaluate without error, and /healthz and /readyz answer; on SIGTERM
//! readiness turns 503 while an open transaction still completes.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use postern_tests::dns::{Record, TestDns};
use postern_tests::gateway::{PASSWORD, TestGateway, USER, deliver_by_mx, trust_loopback};
use postern_tests::postfix::SmtpSink;
use postern_tests::prometheus::{self, JOB, Prometheus, http_get, promtool};
use postern_tests::reply::queue_id;
use postern_tests::repo_file;
use postern_tests::smtp::Smtp;
use serde_json::Value;

fn rules_file() -> PathBuf {
    repo_file("charts/postern/rules/postern-rules.yaml")
}

fn dashboard() -> Value {
    let path = repo_file("charts/postern/dashboards/postern.json");
    let text = std::fs::read_to_string(&path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The alerts the rule file must define, each with a runbook section.
const ALERTS: &[&str] = &[
    "PosternQueueGrowing",
    "PosternQueueOldestMessageTooOld",
    "PosternHighDeferralRatio",
    "PosternHighBounceRatio",
    "PosternSmarthostTlsFailures",
    "PosternAuthFailureSpike",
    "PosternSpoolDiskNearlyFull",
    "PosternDown",
];

/// Titles of the panels that must show data after the load.
const TRAFFIC_PANELS: &[&str] = &[
    "Messages received /s by listener",
    "Deliveries /s by result",
    "Queue depth by state",
    "Sessions active by listener",
    "Outbound connections open by state",
];

/// Runs promtool with `args`; returns (success, stdout + stderr).
fn promtool_run(args: &[&str], cwd: &Path, stdin: Option<&[u8]>) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new(promtool().unwrap())
        .args(args)
        .current_dir(cwd)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn alert_rules_pass_promtool_check_and_unit_tests() {
    let dir = rules_file().parent().unwrap().to_owned();
    let (ok, out) = promtool_run(&["check", "rules", "postern-rules.yaml"], &dir, None);
    assert!(ok, "promtool check rules:\n{out}");
    assert!(
        out.contains(&format!("SUCCESS: {} rules found", ALERTS.len())),
        "{out}"
    );
    let (ok, out) = promtool_run(&["test", "rules", "postern-rules.test.yaml"], &dir, None);
    assert!(ok, "promtool test rules:\n{out}");
    // Every alert has unit tests, firing and quiet.
    let tests = std::fs::read_to_string(dir.join("postern-rules.test.yaml")).unwrap();
    for alert in ALERTS {
        let cases: Vec<&str> = tests
            .split("alertname: ")
            .skip(1)
            .filter(|rest| rest.starts_with(&format!("{alert}\n")))
            .collect();
        let firing = cases
            .iter()
            .filter_map(|c| c.lines().nth(1).map(str::trim))
            .filter(|l| l.starts_with("exp_alerts:") && *l != "exp_alerts: []")
            .count();
        let quiet = cases
            .iter()
            .filter(|c| {
                c.lines()
                    .nth(1)
                    .is_some_and(|l| l.trim() == "exp_alerts: []")
            })
            .count();
        assert!(
            firing >= 1 && quiet >= 1,
            "{alert}: {firing} firing and {quiet} quiet cases"
        );
    }
}

/// GitHub's anchor for a heading: lower case, spaces to dashes, punctuation dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn every_alert_links_to_its_runbook_section() {
    let rules = std::fs::read_to_string(rules_file()).unwrap();
    let ops = std::fs::read_to_string(repo_file("docs/operations.md")).unwrap();
    let anchors: Vec<String> = ops
        .lines()
        .filter_map(|l| {
            l.strip_prefix('#')
                .map(|h| anchor(h.trim_start_matches('#')))
        })
        .collect();
    let runbook = ops
        .split("\n## Alerts runbook\n")
        .nth(1)
        .expect("an Alerts runbook section in docs/operations.md");
    let mut seen = Vec::new();
    for block in rules.split("- alert: ").skip(1) {
        let name = block.lines().next().unwrap().trim();
        seen.push(name.to_owned());
        let url = block
            .lines()
            .find_map(|l| l.trim().strip_prefix("runbook_url: "))
            .unwrap_or_else(|| panic!("{name} has no runbook_url"));
        let (page, fragment) = url.split_once('#').unwrap();
        assert!(page.ends_with("/docs/operations.md"), "{name}: {url}");
        assert_eq!(fragment, name.to_lowercase(), "{name}: {url}");
        assert!(
            anchors.iter().any(|a| a == fragment),
            "{name}: no heading with anchor #{fragment} in docs/operations.md"
        );
        assert!(
            runbook.contains(&format!("\n### {name}\n")),
            "{name}: not a subsection of the Alerts runbook"
        );
        for key in ["for: ", "severity: ", "summary: ", "description: "] {
            assert!(block.contains(key), "{name} has no {key:?}");
        }
    }
    assert_eq!(seen, ALERTS);
}

/// Every (panel title, expression) of the dashboard, rows included.
fn panel_exprs(d: &Value) -> Vec<(String, String)> {
    fn walk(panels: &Value, out: &mut Vec<(String, String)>) {
        for p in panels.as_array().into_iter().flatten() {
            let title = p["title"].as_str().unwrap_or("").to_owned();
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(e) = t["expr"].as_str() {
                    out.push((title.clone(), e.to_owned()));
                }
            }
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&d["panels"], &mut out);
    out
}

/// Every `datasource` object under `v`.
fn datasources<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "datasource" {
                    out.push(x);
                }
                datasources(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| datasources(x, out)),
        _ => {}
    }
}

#[test]
fn dashboard_is_portable_and_filters_by_instance() {
    let d = dashboard();
    assert_eq!(d["schemaVersion"], 39);
    let vars = d["templating"]["list"].as_array().unwrap();
    let var = |name: &str| {
        vars.iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no ${name} variable"))
    };
    let ds = var("datasource");
    assert_eq!(ds["type"], "datasource");
    assert_eq!(ds["query"], "prometheus");
    let inst = var("instance");
    assert_eq!(inst["type"], "query");
    assert_eq!(inst["multi"], true);
    assert_eq!(inst["includeAll"], true);
    assert_eq!(
        inst["query"]["query"],
        "label_values(postern_sessions_active, instance)"
    );
    // No hard-coded data source: everything goes through $datasource.
    let mut found = Vec::new();
    datasources(&d["panels"], &mut found);
    datasources(&d["templating"], &mut found);
    assert!(!found.is_empty());
    for v in found {
        if v.is_object() {
            assert_eq!(v["uid"], "${datasource}", "{v}");
        }
    }
    // Unique panel ids.
    let mut ids: Vec<i64> = d["panels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_i64().unwrap())
        .collect();
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "duplicate panel ids");
    // Every selector is filtered by instance; every rate uses $__rate_interval.
    let exprs = panel_exprs(&d);
    assert!(exprs.len() >= 30, "{} expressions", exprs.len());
    for (title, e) in &exprs {
        let selectors: Vec<&str> = e
            .split('{')
            .skip(1)
            .map(|s| s.split('}').next().unwrap())
            .collect();
        assert!(!selectors.is_empty(), "{title}: {e}");
        for s in selectors {
            assert!(s.contains(r#"instance=~"$instance""#), "{title}: {e}");
        }
        for (i, _) in e.match_indices("rate(") {
            let rest = &e[i..];
            let range = rest.split('[').nth(1).unwrap().split(']').next().unwrap();
            assert_eq!(range, "$__rate_interval", "{title}: {e}");
        }
    }
    for t in TRAFFIC_PANELS {
        assert!(exprs.iter().any(|(title, _)| title == t), "no panel {t:?}");
    }
}

// ---- end to end -------------------------------------------------------------------

fn mx_ip(host: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 40, host)
}

fn port25(ip: Ipv4Addr) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(ip), 25)
}

fn message(from: &str, to: &str) -> String {
    format!("From: <{from}>\r\nTo: <{to}>\r\nSubject: observability\r\n\r\nhello")
}

/// Implicit TLS (465) with AUTH PLAIN; sends one message when the password is right.
fn submissions_message(gw: &TestGateway, password: &str, to: &str) -> u16 {
    let (mut s, greeting) = Smtp::connect_tls(gw.submissions).unwrap();
    assert_eq!(greeting.code, 220);
    s.ehlo().unwrap();
    let code = s.auth_plain(USER, password).unwrap().code;
    if code == 235 {
        let from = format!("{USER}@example.com");
        queue_id(&s.send_message(&from, &[to], &message(&from, to)).unwrap());
    }
    let _ = s.cmd("QUIT");
    code
}

/// Submission (587): MAIL before STARTTLS is refused (530); then STARTTLS, AUTH LOGIN
/// and one message.
fn submission_starttls_message(gw: &TestGateway, to: &str) {
    let (mut s, _) = Smtp::connect(gw.submission).unwrap();
    s.ehlo().unwrap();
    let r = s.cmd(&format!("MAIL FROM:<{USER}@example.com>")).unwrap();
    assert_eq!(r.code, 530, "{}", r.text);
    assert_eq!(s.cmd("STARTTLS").unwrap().code, 220);
    let mut s = s.upgrade().unwrap();
    s.ehlo().unwrap();
    assert_eq!(s.cmd("AUTH LOGIN").unwrap().code, 334);
    assert_eq!(s.cmd(&B64.encode(USER)).unwrap().code, 334);
    let r = s.cmd(&B64.encode(PASSWORD)).unwrap();
    assert_eq!(r.code, 235, "{}", r.text);
    let from = format!("{USER}@example.com");
    queue_id(&s.send_message(&from, &[to], &message(&from, to)).unwrap());
    let _ = s.cmd("QUIT");
}

/// A dashboard expression as Grafana would send it.
fn grafana_substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace("$instance", ".*")
}

/// A gateway in MX mode that took the load below, with its peers (Unbound; smtp-sink
/// as mail exchangers, one accepting and one answering 4xx to RCPT; a null-MX domain
/// for bounces) and a Prometheus that scraped it until the load shows. Started once
/// for every end-to-end test of this binary; the processes die with it.
struct Loaded {
    _gw: TestGateway,
    prom: Prometheus,
    metrics: SocketAddr,
    _good: SmtpSink,
    _slow: SmtpSink,
    _dns: TestDns,
}

fn loaded() -> &'static Loaded {
    static LOADED: OnceLock<Loaded> = OnceLock::new();
    LOADED.get_or_init(load)
}

fn load() -> Loaded {
    let t0 = Instant::now();
    let dns = TestDns::start(&[
        Record::mx("good.test", 10, "mx.good.test"),
        Record::a("mx.good.test", mx_ip(2)),
        Record::null_mx("nomail.test"),
        Record::mx("slow.test", 10, "mx.slow.test"),
        Record::a("mx.slow.test", mx_ip(3)),
    ])
    .unwrap();
    let good = SmtpSink::start(port25(mx_ip(2)), &[]).unwrap();
    // Answers every RCPT with a 4xx: those recipients are deferred again and again.
    let slow = SmtpSink::start(port25(mx_ip(3)), &["-r", "RCPT"]).unwrap();
    let gw = TestGateway::start(|c| {
        deliver_by_mx(c, dns.addr());
        c.metrics.destination_domains = vec!["good.test".into()];
    })
    .unwrap();
    let metrics = gw.metrics_addr();

    let prom = Prometheus::start(&[metrics], &[&rules_file()]).unwrap();
    prom.wait_for_target_up(metrics, Duration::from_secs(30))
        .unwrap();
    let t_ready = t0.elapsed();

    // The load: 30 messages on the relay port (20 delivered, 5 bounced by null MX with
    // a DSN each back to the sender's domain, 5 deferred), 4 over implicit TLS with
    // AUTH PLAIN, 1 over STARTTLS with AUTH LOGIN (after a 530), 2 failed AUTHs.
    for (n, domain) in [(20, "good.test"), (5, "nomail.test"), (5, "slow.test")] {
        for i in 0..n {
            let to = format!("user{i}@{domain}");
            gw.submit("app@good.test", &to, &message("app@good.test", &to));
        }
    }
    for i in 0..4 {
        assert_eq!(
            submissions_message(&gw, PASSWORD, &format!("tls{i}@good.test")),
            235
        );
    }
    submission_starttls_message(&gw, "starttls@good.test");
    for _ in 0..2 {
        assert_eq!(
            submissions_message(&gw, "wrong password", "x@good.test"),
            535
        );
    }
    // 20 + 4 + 1 delivered messages and 5 DSNs reach the good sink.
    good.wait_for_messages(30, Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", gw.log()));
    let t_load = t0.elapsed();

    // Prometheus sees it all (scrapes every second; queue gauges update every 5 s).
    for expr in [
        r#"sum(postern_delivery_attempts_total{result="delivered"}) >= 30"#,
        r#"sum(postern_delivery_attempts_total{result="deferred"}) >= 5"#,
        r#"sum(postern_dsn_generated_total) >= 5"#,
        r#"sum(postern_queue_messages) >= 5"#,
    ] {
        prom.wait_for(expr, Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{e:#}\n{}", scrape(metrics)));
    }
    eprintln!(
        "observability e2e: peers and Prometheus ready {t_ready:.1?}, load delivered \
         {t_load:.1?}, seen by Prometheus {:.1?}",
        t0.elapsed()
    );
    Loaded {
        _gw: gw,
        prom,
        metrics,
        _good: good,
        _slow: slow,
        _dns: dns,
    }
}

/// Fails with every problem found, and the gateway's /metrics.
#[track_caller]
fn assert_no_problems(wrong: &[String], metrics: SocketAddr) {
    assert!(
        wrong.is_empty(),
        "{} problems:\n{}\n--- /metrics ---\n{}",
        wrong.len(),
        wrong.join("\n"),
        scrape(metrics)
    );
}

#[test]
fn health_endpoints_answer_ok_while_serving() {
    let l = loaded();
    let (code, body) = http_get(l.metrics, "/healthz").unwrap();
    assert_eq!(code, 200, "/healthz: {body}");
    let (code, body) = http_get(l.metrics, "/readyz").unwrap();
    assert_eq!(code, 200, "/readyz: {body}");
}

#[test]
fn metrics_pass_promtool_check_metrics() {
    let l = loaded();
    // The raw exposition passes promtool's linter without a word.
    let text = scrape(l.metrics);
    let (ok, out) = promtool_run(&["check", "metrics"], Path::new("."), Some(text.as_bytes()));
    assert!(
        ok && out.trim().is_empty(),
        "promtool check metrics:\n{out}\n--- /metrics ---\n{text}"
    );
}

/// What the metrics must say after the load: `EXPR == N` or `EXPR >= N`, each
/// evaluated by Prometheus.
const EXPECTED: &[&str] = &[
    r#"sum(postern_messages_received_total{listener="relay"}) == 30"#,
    r#"sum(postern_messages_received_total{listener="submissions"}) == 4"#,
    r#"sum(postern_messages_received_total{listener="submission"}) == 1"#,
    r#"sum(postern_received_bytes_total{listener="relay"}) >= 1800"#,
    r#"sum(postern_connections_total{result="accepted"}) >= 37"#,
    r#"sum(postern_sessions_active) == 0"#,
    // One series per listener.
    r#"count(postern_sessions_active) == 3"#,
    r#"sum(postern_tls_handshakes_total{listener="submissions", result="ok"}) >= 6"#,
    r#"sum(postern_tls_handshakes_total{listener="submission", result="ok"}) >= 1"#,
    r#"sum(postern_tls_handshakes_total{result="ok", version=~"TLSv1.3|TLSv1.2"}) >= 7"#,
    r#"sum(postern_auth_attempts_total{mechanism="PLAIN", result="success"}) == 4"#,
    r#"sum(postern_auth_attempts_total{mechanism="LOGIN", result="success"}) == 1"#,
    r#"sum(postern_auth_attempts_total{mechanism="PLAIN", result="failure"}) == 2"#,
    r#"sum(postern_commands_refused_total{code="530"}) == 1"#,
    r#"sum(postern_commands_refused_total{code="535"}) == 2"#,
    r#"sum(postern_delivery_attempts_total{result="delivered", status_class="2", destination="good.test"}) == 30"#,
    r#"sum(postern_delivery_attempts_total{result="bounced", status_class="5", destination="other"}) == 5"#,
    r#"sum(postern_delivery_attempts_total{result="deferred", status_class="4", destination="other"}) >= 5"#,
    r#"sum(postern_delivery_latency_seconds_count{destination="good.test"}) == 30"#,
    r#"sum(postern_dsn_generated_total) == 5"#,
    r#"sum(postern_dns_lookups_total{type="MX", result="ok"}) >= 3"#,
    r#"sum(postern_dns_lookups_total{type="A", result="ok"}) >= 2"#,
    r#"sum(postern_outbound_connections_total{result="ok", tls="none"}) >= 2"#,
    // The five slow.test messages, deferred.
    r#"sum(postern_queue_messages{state=~"ready|deferred"}) == 5"#,
    r#"sum(postern_queue_recipients{state=~"ready|deferred"}) == 5"#,
    r#"sum(postern_queue_messages{state="held"}) == 0"#,
    r#"max(postern_queue_oldest_message_age_seconds) >= 0"#,
    // At least 40 messages committed.
    r#"sum(postern_spool_commit_batch_size_sum) >= 40"#,
    r#"sum(postern_spool_commit_duration_seconds_count) >= 1"#,
    r#"min(postern_spool_free_bytes) >= 1"#,
    r#"sum(process_resident_memory_bytes) >= 1"#,
];

#[test]
fn metrics_count_what_happened() {
    let Loaded { prom, metrics, .. } = loaded();
    let mut wrong = Vec::new();
    let up = format!(r#"sum(up{{job="{JOB}"}}) == 1"#);
    for check in EXPECTED.iter().copied().chain([up.as_str()]) {
        let (expr, bound) = check.rsplit_once(' ').expect("EXPR OP N");
        let bound: f64 = bound.parse().expect("a number");
        let (expr, at_least) = match (expr.strip_suffix(" >="), expr.strip_suffix(" ==")) {
            (Some(e), _) => (e, true),
            (None, Some(e)) => (e, false),
            _ => panic!("{check}: neither == nor >="),
        };
        match prom.value(expr) {
            Ok(Some(v)) if v == bound || at_least && v > bound => {}
            got => wrong.push(format!("{check}: got {got:?}")),
        }
    }
    assert_no_problems(&wrong, *metrics);
}

#[test]
fn dashboard_instance_variable_finds_the_gateway() {
    let Loaded { prom, metrics, .. } = loaded();
    let series = prom
        .api("/api/v1/series?match%5B%5D=postern_sessions_active")
        .unwrap();
    assert!(
        series["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["instance"] == metrics.to_string().as_str()),
        "{series}"
    );
}

#[test]
fn dashboard_panels_evaluate_and_traffic_panels_show_data() {
    let Loaded { prom, metrics, .. } = loaded();
    let mut wrong = Vec::new();
    let d = dashboard();
    let exprs = panel_exprs(&d);
    for (title, e) in &exprs {
        let q = grafana_substitute(e);
        let v = prom.query(&q).unwrap();
        if v["status"] != "success" {
            wrong.push(format!("panel {title:?}: {q} -> {v}"));
        }
    }
    for panel in TRAFFIC_PANELS {
        for (_, e) in exprs.iter().filter(|(t, _)| t == panel) {
            let q = grafana_substitute(e);
            if let Err(err) = prom.wait_for(&q, Duration::from_secs(20)) {
                wrong.push(format!("panel {panel:?} has no data: {err:#}"));
            }
        }
    }
    assert_no_problems(&wrong, *metrics);
}

#[test]
fn alert_rules_load_and_evaluate_on_real_data() {
    let Loaded { prom, metrics, .. } = loaded();
    let mut wrong = Vec::new();
    // The alert rules loaded, evaluate against real data without error, and each
    // expression parses through the query API too.
    let deadline = Instant::now() + Duration::from_secs(20);
    let rules = loop {
        let r = prom.api("/api/v1/rules?type=alert").unwrap();
        let all: Vec<Value> = r["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        if !all.is_empty() && all.iter().all(|r| r["health"] != "unknown")
            || Instant::now() > deadline
        {
            break all;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let mut names: Vec<&str> = rules.iter().filter_map(|r| r["name"].as_str()).collect();
    names.sort_unstable();
    let mut expected = ALERTS.to_vec();
    expected.sort_unstable();
    assert_eq!(names, expected, "alerts loaded by Prometheus");
    for r in &rules {
        let name = r["name"].as_str().unwrap_or("?");
        if r["health"] != "ok" {
            wrong.push(format!(
                "alert {name}: health {} ({})",
                r["health"], r["lastError"]
            ));
        }
        let q = r["query"].as_str().unwrap();
        let v = prom.query(q).unwrap();
        if v["status"] != "success" {
            wrong.push(format!("alert {name}: {q} -> {v}"));
        }
    }
    assert_no_problems(&wrong, *metrics);
}

/// Draining: with a transaction open, SIGTERM makes /readyz 503 at once while /healthz
/// stays 200, and the transaction still ends in 250, then 421. (A gateway of its own:
/// the others' is still scraped.)
#[test]
fn sigterm_turns_readiness_503_while_a_transaction_completes() {
    let mut gw = TestGateway::start(|c| {
        trust_loopback(c);
        c.timeouts.shutdown_grace = Duration::from_secs(10);
    })
    .unwrap();
    let metrics = gw.metrics_addr();
    let (code, body) = http_get(metrics, "/readyz").unwrap();
    assert_eq!(code, 200, "/readyz: {body}");
    let (mut s, _) = Smtp::connect(gw.relay).unwrap();
    assert_eq!(s.cmd("EHLO client.test").unwrap().code, 250);
    assert_eq!(s.cmd("MAIL FROM:<app@good.test>").unwrap().code, 250);
    let pid = gw.pid().unwrap();
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (code, body) = http_get(metrics, "/readyz").unwrap();
        if code == 503 {
            assert!(body.contains("shutting down"), "{body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz still {code} {body:?} after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(http_get(metrics, "/healthz").unwrap().0, 200);
    assert_eq!(s.cmd("RCPT TO:<drain@good.test>").unwrap().code, 250);
    assert_eq!(s.cmd("DATA").unwrap().code, 354);
    let r = s.cmd("Subject: drain\r\n\r\nlast one\r\n.").unwrap();
    assert_eq!(r.code, 250, "{}", r.text);
    let r = s.reply().unwrap();
    assert!(r.last_line().starts_with("421 4.3.2 "), "{}", r.text);
    assert!(
        gw.terminate(Duration::from_secs(15)),
        "gateway did not exit"
    );
}

/// The gateway's /metrics text.
fn scrape(addr: SocketAddr) -> String {
    prometheus::scrape(addr).unwrap_or_else(|e| panic!("{e:#}"))
}
