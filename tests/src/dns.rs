//! A real DNS server on loopback for delivery tests: Debian's Unbound serving a fixed set
//! of records as local data, on `127.0.0.1:<free port>` over UDP and TCP.
//!
//! [`TestDns::start`] takes the records as [`Record`]s. The server is authoritative-like for
//! the whole tree (`local-zone: "." static`), so it never recurses and never sends a packet
//! off the machine:
//!
//! - a name with records answers them (`NOERROR`);
//! - a name with records of other types only answers `NOERROR` with no answer (NODATA);
//! - every other name answers `NXDOMAIN` (so "NXDOMAIN" is simply a name left out);
//! - [`Record::Servfail`] makes a domain and everything below it answer `SERVFAIL` (it is
//!   forwarded to a loopback address that Unbound refuses to query, which fails at once);
//! - [`Record::Refused`] makes a domain answer `REFUSED`;
//! - [`Record::Timeout`] makes a domain never answer (Unbound drops the query), so clients
//!   time out.
//!
//! Negative answers carry an SOA whose minimum (negative-cache TTL) is 1 second. Positive
//! records have a TTL of [`TTL`] seconds. Unbound logs every query and reply to a file that
//! [`TestDns::log`] returns, for tests that check what a resolver asked.
//!
//! A missing `unbound` binary fails [`TestDns::start`] with the command that installs it
//! (`tests/scripts/install-peers.sh`); nothing is skipped.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

use crate::peers::{require, scratch_dir};
use crate::process::{ChildGuard, SpawnGuarded, free_port, start_on_free_port, wait_serving};

/// TTL of every positive record the server answers.
pub const TTL: u32 = 60;

/// One thing the test server answers. Names may be given with or without the final dot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// `domain MX preference exchange`.
    Mx {
        domain: String,
        preference: u16,
        exchange: String,
    },
    /// RFC 7505 null MX, `domain MX 0 .`: the domain accepts no mail.
    NullMx { domain: String },
    /// `name A addr`.
    A { name: String, addr: Ipv4Addr },
    /// `name AAAA addr`.
    Aaaa { name: String, addr: Ipv6Addr },
    /// `name CNAME target`. Unbound answers the CNAME alone and does not chase the target
    /// in its local data; a resolver that wants the target asks for it.
    Cname { name: String, target: String },
    /// `domain` and every name below it answer `SERVFAIL` (at once).
    Servfail { domain: String },
    /// `domain` and every name below it answer `REFUSED`.
    Refused { domain: String },
    /// Queries for `domain` and every name below it are dropped: no answer, over UDP or
    /// TCP, so the client times out.
    Timeout { domain: String },
}

impl Record {
    pub fn mx(domain: impl Into<String>, preference: u16, exchange: impl Into<String>) -> Self {
        Record::Mx {
            domain: domain.into(),
            preference,
            exchange: exchange.into(),
        }
    }

    pub fn null_mx(domain: impl Into<String>) -> Self {
        Record::NullMx {
            domain: domain.into(),
        }
    }

    pub fn a(name: impl Into<String>, addr: Ipv4Addr) -> Self {
        Record::A {
            name: name.into(),
            addr,
        }
    }

    pub fn aaaa(name: impl Into<String>, addr: Ipv6Addr) -> Self {
        Record::Aaaa {
            name: name.into(),
            addr,
        }
    }

    pub fn cname(name: impl Into<String>, target: impl Into<String>) -> Self {
        Record::Cname {
            name: name.into(),
            target: target.into(),
        }
    }

    pub fn servfail(domain: impl Into<String>) -> Self {
        Record::Servfail {
            domain: domain.into(),
        }
    }

    pub fn refused(domain: impl Into<String>) -> Self {
        Record::Refused {
            domain: domain.into(),
        }
    }

    pub fn timeout(domain: impl Into<String>) -> Self {
        Record::Timeout {
            domain: domain.into(),
        }
    }
}

/// A private Unbound serving [`Record`]s on `127.0.0.1:<port>` (UDP and TCP); stopped on
/// drop.
#[derive(Debug)]
pub struct TestDns {
    /// Stopped when dropped.
    _child: ChildGuard,
    addr: SocketAddr,
    log_file: PathBuf,
    // Removed on drop, after the server is stopped (fields drop after `Drop::drop`).
    _dir: TempDir,
}

impl TestDns {
    /// Starts Unbound with `records` on a free loopback port and waits until it answers.
    pub fn start(records: &[Record]) -> Result<Self> {
        let unbound = require("unbound")?;
        let dir = scratch_dir("dns-")?;
        let log_file = dir.path().join("unbound.log");
        let conf_file = dir.path().join("unbound.conf");
        let stderr_file = dir.path().join("unbound.stderr");
        let (child, addr) = start_on_free_port(
            "unbound",
            free_udp_tcp_addr,
            |addr| {
                std::fs::write(&conf_file, config(addr, dir.path(), &log_file, records)?)
                    .with_context(|| format!("writing {}", conf_file.display()))?;
                let _ = std::fs::remove_file(&log_file);
                // Only what Unbound says before it opens its log file goes here.
                let stderr = std::fs::File::create(&stderr_file)
                    .with_context(|| format!("creating {}", stderr_file.display()))?;
                Command::new(&unbound)
                    .arg("-d")
                    .arg("-c")
                    .arg(&conf_file)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(stderr)
                    .spawn_guarded()
                    .with_context(|| format!("starting {}", unbound.display()))
            },
            |child, addr| {
                wait_serving(
                    "unbound",
                    child,
                    addr,
                    &[stderr_file.as_path(), log_file.as_path()],
                    Duration::from_secs(10),
                    Duration::from_millis(20),
                    || probe(addr, Duration::from_millis(200)),
                )
            },
        )?;
        Ok(TestDns {
            _child: child,
            addr,
            log_file,
            _dir: dir,
        })
    }

    /// Where the server listens, over both UDP and TCP.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Unbound's log: one line per query (`<client> <name>. <TYPE> IN`) and one per reply
    /// (`... <RCODE> <time> <from cache> <size>`). It includes the start-up probe(s),
    /// queries for `. SOA`.
    pub fn log(&self) -> Result<String> {
        std::fs::read_to_string(&self.log_file)
            .with_context(|| format!("reading {}", self.log_file.display()))
    }

    /// How many queries for `name` (with or without the final dot) of type `rtype`
    /// (e.g. "MX", "AAAA") the server has received.
    pub fn queries(&self, name: &str, rtype: &str) -> Result<usize> {
        let needle = format!(" {} {} IN", fqdn(name), rtype.to_ascii_uppercase());
        Ok(self.log()?.lines().filter(|l| l.ends_with(&needle)).count())
    }
}

/// Sends one query (`. SOA`) over UDP and tells whether a reply with its id came back.
fn probe(addr: SocketAddr, timeout: Duration) -> bool {
    let Ok(socket) = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)) else {
        return false;
    };
    let id: u16 = 0x5053;
    // Header: id, flags RD, 1 question; question: root name, type SOA (6), class IN (1).
    let mut query = Vec::with_capacity(17);
    query.extend_from_slice(&id.to_be_bytes());
    query.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    query.extend_from_slice(&[0, 0, 6, 0, 1]);
    if socket.set_read_timeout(Some(timeout)).is_err() || socket.send_to(&query, addr).is_err() {
        return false;
    }
    let mut buf = [0u8; 512];
    matches!(socket.recv_from(&mut buf), Ok((n, from)) if n >= 12 && from == addr && buf[..2] == id.to_be_bytes())
}

/// A loopback address whose port is free for both TCP and UDP right now.
fn free_udp_tcp_addr() -> Result<SocketAddr> {
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    for _ in 0..100 {
        let port = free_port(ip)?;
        if UdpSocket::bind((ip, port)).is_ok() {
            return Ok(SocketAddr::new(ip, port));
        }
    }
    bail!("no port free for both TCP and UDP on {ip}")
}

/// `name` as an absolute name, lower-cased, with its final dot.
fn fqdn(name: &str) -> String {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    format!("{name}.")
}

/// Checks that `name` is a plain DNS name (not the root) that can go into the
/// configuration unquoted.
fn checked(name: &str) -> Result<String> {
    let fq = fqdn(name);
    let ok = fq.len() > 1
        && (fq.len() <= 254
            && fq[..fq.len() - 1].split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            }));
    if !ok {
        bail!("not a DNS name the test server can serve: {name:?}");
    }
    Ok(fq)
}

/// The whole Unbound configuration for `records` on `addr`.
fn config(addr: SocketAddr, dir: &Path, log_file: &Path, records: &[Record]) -> Result<String> {
    let port = addr.port();
    let ip = addr.ip();
    let mut c = String::new();
    // Unbound is started as root with no user to drop to, no chroot, no pid file, and no
    // validator (so no trust anchor is read). SO_REUSEPORT is off so that two instances
    // can never share a port. The root zone is static: no recursion, nothing leaves the
    // machine.
    writeln!(
        c,
        r#"server:
  interface: {ip}@{port}
  port: {port}
  do-ip4: yes
  do-ip6: no
  do-udp: yes
  do-tcp: yes
  so-reuseport: no
  username: ""
  chroot: ""
  directory: "{dir}"
  pidfile: ""
  use-syslog: no
  logfile: "{log}"
  log-queries: yes
  log-replies: yes
  verbosity: 1
  num-threads: 1
  access-control: 127.0.0.0/8 allow
  module-config: "iterator"
  local-zone: "." static
  local-data: ". {TTL} IN SOA ns.postern.test. hostmaster.postern.test. 1 3600 600 86400 1"
  local-zone: "test." static
  local-data: "test. {TTL} IN SOA ns.postern.test. hostmaster.postern.test. 1 3600 600 86400 1""#,
        dir = dir.display(),
        log = log_file.display(),
    )?;
    let mut forwards = Vec::new();
    for r in records {
        match r {
            Record::Mx {
                domain,
                preference,
                exchange,
            } => writeln!(
                c,
                r#"  local-data: "{} {TTL} IN MX {preference} {}""#,
                checked(domain)?,
                // "." is the RFC 7505 null MX target, as in [`Record::NullMx`].
                if exchange.trim_end_matches('.').is_empty() {
                    ".".to_string()
                } else {
                    checked(exchange)?
                }
            )?,
            Record::NullMx { domain } => {
                writeln!(c, r#"  local-data: "{} {TTL} IN MX 0 .""#, checked(domain)?)?
            }
            Record::A { name, addr } => {
                writeln!(c, r#"  local-data: "{} {TTL} IN A {addr}""#, checked(name)?)?
            }
            Record::Aaaa { name, addr } => writeln!(
                c,
                r#"  local-data: "{} {TTL} IN AAAA {addr}""#,
                checked(name)?
            )?,
            Record::Cname { name, target } => writeln!(
                c,
                r#"  local-data: "{} {TTL} IN CNAME {}""#,
                checked(name)?,
                checked(target)?
            )?,
            Record::Servfail { domain } => {
                // Resolved "normally" (transparent) through a forwarder on loopback, which
                // Unbound will not query (do-not-query-localhost): SERVFAIL at once.
                let d = checked(domain)?;
                writeln!(c, r#"  local-zone: "{d}" transparent"#)?;
                forwards.push(d);
            }
            Record::Refused { domain } => {
                writeln!(c, r#"  local-zone: "{}" refuse"#, checked(domain)?)?
            }
            Record::Timeout { domain } => {
                writeln!(c, r#"  local-zone: "{}" deny"#, checked(domain)?)?
            }
        }
    }
    for d in forwards {
        writeln!(
            c,
            "forward-zone:\n  name: \"{d}\"\n  forward-addr: 127.0.0.1@9"
        )?;
    }
    writeln!(c, "remote-control:\n  control-enable: no")?;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `dig` got back: the response code (or "TIMEOUT") and the answer section's
    /// records as "TYPE RDATA".
    #[derive(Debug)]
    struct Dig {
        status: String,
        answers: Vec<String>,
    }

    fn dig(dns: &TestDns, name: &str, rtype: &str, tcp: bool) -> Dig {
        let dig = require("dig").unwrap();
        let out = Command::new(dig)
            .arg(format!("@{}", dns.addr().ip()))
            .arg("-p")
            .arg(dns.addr().port().to_string())
            .args(["+tries=1", "+time=2", "+noall", "+comments", "+answer"])
            .arg(if tcp { "+tcp" } else { "+notcp" })
            .args([name, rtype])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let status = stdout
            .lines()
            .find_map(|l| l.split("status: ").nth(1))
            .map(|s| s.split(',').next().unwrap_or_default().to_string());
        let Some(status) = status else {
            // dig exits with 9 when no reply came back.
            assert_eq!(out.status.code(), Some(9), "dig output: {stdout}");
            return Dig {
                status: "TIMEOUT".into(),
                answers: Vec::new(),
            };
        };
        let answers = stdout
            .lines()
            .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
            .map(|l| {
                // name TTL class type rdata...
                let fields = l.split_whitespace().collect::<Vec<_>>();
                fields[3..].join(" ")
            })
            .collect();
        Dig { status, answers }
    }

    fn records() -> Vec<Record> {
        vec![
            Record::mx("example.test", 10, "mx1.example.test"),
            Record::mx("example.test.", 20, "mx2.example.test."),
            Record::a("mx1.example.test", Ipv4Addr::new(127, 0, 0, 2)),
            Record::aaaa("mx1.example.test", Ipv6Addr::LOCALHOST),
            Record::a("mx2.example.test", Ipv4Addr::new(127, 0, 0, 3)),
            Record::null_mx("nomail.test"),
            Record::mx("nomail2.test", 0, "."),
            Record::mx("mail.example.com", 5, "smtp.example.com"),
            Record::aaaa("smtp.example.com", "::ffff:127.0.0.4".parse().unwrap()),
            Record::cname("alias.example.test", "mx1.example.test"),
            Record::servfail("broken.test"),
            Record::refused("refused.test"),
            Record::timeout("slow.test"),
        ]
    }

    #[test]
    fn dns_serves_each_record_kind_over_udp_and_tcp() {
        let dns = TestDns::start(&records()).unwrap();
        for tcp in [false, true] {
            let mx = dig(&dns, "example.test", "MX", tcp);
            assert_eq!(mx.status, "NOERROR");
            let mut answers = mx.answers.clone();
            answers.sort();
            assert_eq!(
                answers,
                ["MX 10 mx1.example.test.", "MX 20 mx2.example.test."]
            );

            let a = dig(&dns, "mx1.example.test", "A", tcp);
            assert_eq!(
                (a.status.as_str(), a.answers),
                ("NOERROR", vec!["A 127.0.0.2".into()])
            );
            let aaaa = dig(&dns, "MX1.Example.Test", "AAAA", tcp);
            assert_eq!(
                (aaaa.status.as_str(), aaaa.answers),
                ("NOERROR", vec!["AAAA ::1".into()])
            );

            // A domain outside .test works the same.
            let mx = dig(&dns, "mail.example.com", "MX", tcp);
            assert_eq!(mx.answers, ["MX 5 smtp.example.com."]);
            let aaaa = dig(&dns, "smtp.example.com", "AAAA", tcp);
            assert_eq!(aaaa.answers, ["AAAA ::ffff:127.0.0.4"]);

            let null = dig(&dns, "nomail.test", "MX", tcp);
            assert_eq!(
                (null.status.as_str(), null.answers),
                ("NOERROR", vec!["MX 0 .".into()])
            );

            let null = dig(&dns, "nomail2.test", "MX", tcp);
            assert_eq!(null.answers, ["MX 0 ."]);

            let cname = dig(&dns, "alias.example.test", "A", tcp);
            assert_eq!(cname.answers, ["CNAME mx1.example.test."]);
        }
    }

    #[test]
    fn dns_answers_nodata_nxdomain_servfail_refused_and_timeout() {
        let dns = TestDns::start(&records()).unwrap();
        for tcp in [false, true] {
            // The name exists with other types: NOERROR, no answer.
            let nodata = dig(&dns, "mx2.example.test", "AAAA", tcp);
            assert_eq!(
                (nodata.status.as_str(), nodata.answers.len()),
                ("NOERROR", 0)
            );
            let nodata = dig(&dns, "mx1.example.test", "MX", tcp);
            assert_eq!(
                (nodata.status.as_str(), nodata.answers.len()),
                ("NOERROR", 0)
            );

            for absent in ["absent.test", "sub.mx1.example.test", "nothing.example.org"] {
                let nx = dig(&dns, absent, "MX", tcp);
                assert_eq!(
                    (nx.status.as_str(), nx.answers.len()),
                    ("NXDOMAIN", 0),
                    "{absent}"
                );
            }

            for name in ["broken.test", "mx.broken.test"] {
                assert_eq!(dig(&dns, name, "MX", tcp).status, "SERVFAIL", "{name}");
                assert_eq!(dig(&dns, name, "A", tcp).status, "SERVFAIL", "{name}");
            }
            assert_eq!(dig(&dns, "refused.test", "MX", tcp).status, "REFUSED");
            assert_eq!(dig(&dns, "a.slow.test", "A", tcp).status, "TIMEOUT");
            assert_eq!(dig(&dns, "slow.test", "MX", tcp).status, "TIMEOUT");
        }
        assert_eq!(dns.queries("broken.test", "mx").unwrap(), 2);
        assert!(dns.log().unwrap().contains("absent.test. MX IN NXDOMAIN"));
    }

    #[test]
    fn dns_instances_are_independent_and_stop_on_drop() {
        let one = TestDns::start(&[Record::a("host.test", Ipv4Addr::new(127, 0, 0, 7))]).unwrap();
        let two = TestDns::start(&[Record::null_mx("host.test")]).unwrap();
        assert_ne!(one.addr(), two.addr());
        assert_eq!(dig(&one, "host.test", "A", false).answers, ["A 127.0.0.7"]);
        assert_eq!(dig(&two, "host.test", "A", false).answers.len(), 0);
        assert_eq!(dig(&two, "host.test", "MX", false).answers, ["MX 0 ."]);
        let addr = one.addr();
        drop(one);
        assert!(!probe(addr, Duration::from_millis(300)));
        assert!(std::net::TcpStream::connect(addr).is_err());
    }

    #[test]
    fn dns_rejects_names_that_are_not_names() {
        for bad in ["a b.test", "x\".test", "a..test", "", "-\n"] {
            let err = TestDns::start(&[Record::a(bad, Ipv4Addr::LOCALHOST)]).unwrap_err();
            assert!(err.to_string().contains("not a DNS name"), "{bad:?}: {err}");
        }
    }
}
