//! Files that change under a running gateway: the TLS certificate and key (rotation
//! without a restart, and refusing a broken or half-rotated pair) and the credentials
//! file (users added and removed, a broken file ignored).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use postern_tests::gateway::{PASSWORD, TestGateway, USER, hash_password};
use postern_tests::peers::require;
use postern_tests::reply::expect;
use postern_tests::smtp::{Smtp, SmtpReply};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// An implicit-TLS session on 465 after EHLO; returns it and the server certificate.
fn tls_session(gw: &TestGateway) -> Result<(Smtp, Vec<u8>)> {
    let (mut s, greeting) = Smtp::connect_tls(gw.submissions)?;
    assert_eq!(greeting.code, 220, "{:?}", greeting.text);
    let cert = s.peer_certificate().context("no server certificate")?;
    assert_eq!(s.cmd("EHLO client.test")?.code, 250);
    Ok((s, cert))
}

/// The certificate a new STARTTLS session on 587 gets.
fn starttls_certificate(gw: &TestGateway) -> Result<Vec<u8>> {
    let (mut s, greeting) = Smtp::connect(gw.submission)?;
    assert_eq!(greeting.code, 220, "{:?}", greeting.text);
    assert_eq!(s.cmd("EHLO client.test")?.code, 250);
    expect(&s.cmd("STARTTLS")?, 220, "2.0.0");
    let s = s.upgrade()?;
    s.peer_certificate().context("no server certificate")
}

/// AUTH PLAIN on a new implicit-TLS session.
fn auth(gw: &TestGateway, user: &str, password: &str) -> Result<(Smtp, SmtpReply)> {
    let (mut s, _) = tls_session(gw)?;
    let r = s.auth_plain(user, password)?;
    Ok((s, r))
}

/// Number of log lines holding every one of `needles`.
fn log_lines(gw: &TestGateway, needles: &[&str]) -> usize {
    gw.log()
        .lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .count()
}

/// Waits (at most `within`) until more than `before` log lines hold all `needles`.
fn wait_for_log(gw: &TestGateway, needles: &[&str], before: usize, within: Duration) -> Result<()> {
    let deadline = Instant::now() + within;
    while log_lines(gw, needles) <= before {
        if Instant::now() > deadline {
            bail!("no new log line with {needles:?} within {within:?}");
        }
        sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Writes `data` beside `dest` and renames it into place (an atomic replacement).
fn replace(dest: &Path, data: &[u8]) -> Result<()> {
    let tmp = dest.with_extension("new");
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, dest)?;
    Ok(())
}

/// A new self-signed pair for `name`, made by openssl in `dir`: (certificate, key).
fn openssl_pair(dir: &Path, name: &str) -> Result<(PathBuf, PathBuf)> {
    let openssl = require("openssl")?;
    let (cert, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    let out = Command::new(openssl)
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .args(["-subj", &format!("/CN={name}"), "-days", "1"])
        .output()?;
    if !out.status.success() {
        bail!(
            "openssl req failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok((cert, key))
}

fn der(cert: &Path) -> Result<Vec<u8>> {
    Ok(CertificateDer::from_pem_file(cert)
        .with_context(|| format!("reading {}", cert.display()))?
        .to_vec())
}

/// Waits until new sessions on 465 get certificate `want`.
fn wait_for_certificate(gw: &TestGateway, want: &[u8], within: Duration) -> Result<Duration> {
    let started = Instant::now();
    loop {
        let (_, cert) = tls_session(gw)?;
        if cert == want {
            return Ok(started.elapsed());
        }
        if started.elapsed() > within {
            bail!("new sessions still get the old certificate after {within:?}");
        }
        sleep(Duration::from_millis(100));
    }
}

#[test]
fn certificate_rotates_without_restart() -> Result<()> {
    let gw = TestGateway::start(|_| {})?;
    let pid = gw.pid();
    let (mut old, old_cert) = tls_session(&gw)?;
    expect(&old.auth_plain(USER, PASSWORD)?, 235, "2.7.0");
    assert_eq!(old_cert, der(&gw.config.tls.certificate)?);
    assert_eq!(starttls_certificate(&gw)?, old_cert);

    let scratch = tempfile::tempdir_in(gw.dir.path())?;
    let (cert, key) = openssl_pair(scratch.path(), "rotated.test")?;
    let new_cert = der(&cert)?;
    assert_ne!(new_cert, old_cert);
    // Key first, then certificate, as a rotation tool might: for a moment the two
    // do not match, and that moment must not be served.
    std::fs::rename(&key, &gw.config.tls.private_key)?;
    std::fs::rename(&cert, &gw.config.tls.certificate)?;
    wait_for_certificate(&gw, &new_cert, Duration::from_secs(3))?;
    assert_eq!(starttls_certificate(&gw)?, new_cert, "STARTTLS on 587 too");
    assert_eq!(gw.pid(), pid, "no restart");

    // The session from before the rotation goes on with its old certificate.
    assert_eq!(old.peer_certificate(), Some(old_cert));
    expect(&old.cmd("NOOP")?, 250, "2.0.0");
    expect(
        &old.send_message(
            "alice@example.com",
            &["someone@example.net"],
            "Subject: reload test\r\n\r\nbody",
        )?,
        250,
        "2.0.0",
    );
    expect(&old.cmd("QUIT")?, 221, "2.0.0");
    assert_eq!(gw.queue()?.len(), 1);
    assert!(log_lines(&gw, &["reloaded after a file change", "TLS certificate"]) >= 1);
    Ok(())
}

#[test]
fn certificate_rotates_by_symlink_swap() -> Result<()> {
    // A mounted Kubernetes Secret: tls.crt -> ..data/tls.crt, ..data -> ..v1. An
    // update writes ..v2 and swaps the ..data link; the files' own paths never change.
    let mount = tempfile::tempdir()?;
    let m = mount.path();
    let version = |name: &str| -> Result<Vec<u8>> {
        let dir = m.join(format!("..{name}"));
        std::fs::create_dir(&dir)?;
        let (cert, key) = openssl_pair(&dir, name)?;
        std::fs::rename(&key, dir.join("tls.key"))?;
        std::fs::rename(&cert, dir.join("tls.crt"))?;
        der(&dir.join("tls.crt"))
    };
    let first = version("v1")?;
    std::os::unix::fs::symlink("..v1", m.join("..data"))?;
    std::os::unix::fs::symlink("..data/tls.crt", m.join("tls.crt"))?;
    std::os::unix::fs::symlink("..data/tls.key", m.join("tls.key"))?;
    let gw = TestGateway::start(|c| {
        c.tls.certificate = m.join("tls.crt");
        c.tls.private_key = m.join("tls.key");
    })?;
    let (mut old, cert) = tls_session(&gw)?;
    assert_eq!(cert, first);

    let second = version("v2")?;
    std::os::unix::fs::symlink("..v2", m.join("..data_tmp"))?;
    std::fs::rename(m.join("..data_tmp"), m.join("..data"))?;
    wait_for_certificate(&gw, &second, Duration::from_secs(3))?;
    assert_eq!(starttls_certificate(&gw)?, second);
    expect(&old.cmd("NOOP")?, 250, "2.0.0");
    Ok(())
}

#[test]
fn broken_certificate_is_not_loaded() -> Result<()> {
    let gw = TestGateway::start(|_| {})?;
    let (_, old_cert) = tls_session(&gw)?;
    let needles = ["file change not loaded", "TLS certificate"];
    let before = log_lines(&gw, &needles);
    replace(&gw.config.tls.certificate, b"this is not a certificate\n")?;
    wait_for_log(&gw, &needles, before, Duration::from_secs(3))?;
    let log = gw.log();
    assert!(log.contains("no CERTIFICATE block found"), "{log}");
    // New sessions still get the old certificate, over both kinds of TLS.
    let (mut s, cert) = tls_session(&gw)?;
    assert_eq!(cert, old_cert);
    expect(&s.cmd("NOOP")?, 250, "2.0.0");
    assert_eq!(starttls_certificate(&gw)?, old_cert);

    // A good pair afterwards is picked up: the watcher is not stuck on the bad one.
    let scratch = tempfile::tempdir_in(gw.dir.path())?;
    let (cert, key) = openssl_pair(scratch.path(), "fixed.test")?;
    let new_cert = der(&cert)?;
    std::fs::rename(&key, &gw.config.tls.private_key)?;
    std::fs::rename(&cert, &gw.config.tls.certificate)?;
    wait_for_certificate(&gw, &new_cert, Duration::from_secs(3))?;
    Ok(())
}

#[test]
fn half_rotated_pair_is_not_loaded() -> Result<()> {
    let gw = TestGateway::start(|_| {})?;
    let (_, old_cert) = tls_session(&gw)?;
    let scratch = tempfile::tempdir_in(gw.dir.path())?;
    let (cert, key) = openssl_pair(scratch.path(), "rotated.test")?;
    let new_cert = der(&cert)?;
    let needles = ["file change not loaded", "TLS certificate"];
    let before = log_lines(&gw, &needles);
    // Only the key so far: it does not match the certificate in place.
    std::fs::rename(&key, &gw.config.tls.private_key)?;
    wait_for_log(&gw, &needles, before, Duration::from_secs(3))?;
    assert!(gw.log().contains("does not match the certificate"));
    // Handshakes still work, with the old pair.
    let (mut s, served) = tls_session(&gw)?;
    assert_eq!(served, old_cert);
    expect(&s.cmd("NOOP")?, 250, "2.0.0");
    // The certificate arrives: the pair is complete and served.
    std::fs::rename(&cert, &gw.config.tls.certificate)?;
    wait_for_certificate(&gw, &new_cert, Duration::from_secs(3))?;
    Ok(())
}

#[test]
fn credentials_reload_adds_and_removes_users() -> Result<()> {
    let gw = TestGateway::start(|_| {})?;
    let creds = gw.credentials_file().to_owned();
    let carol_password = "carol's fresh password";
    let (_, r) = auth(&gw, "carol", carol_password)?;
    expect(&r, 535, "5.7.8");

    // Append a user.
    let line = format!(
        "carol:{}:carol@example.net\n",
        hash_password(carol_password, false)?
    );
    let loaded = ["credentials loaded"];
    let before = log_lines(&gw, &loaded);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&creds)?
        .write_all(line.as_bytes())?;
    let appended = Instant::now();
    wait_for_log(&gw, &loaded, before, Duration::from_secs(3))?;
    let (mut carol, r) = auth(&gw, "carol", carol_password)?;
    expect(&r, 235, "2.7.0");
    assert!(appended.elapsed() < Duration::from_secs(3));
    expect(&carol.cmd("MAIL FROM:<alice@example.com>")?, 553, "5.7.1");
    expect(
        &carol.send_message(
            "carol@example.net",
            &["friend@example.org"],
            "Subject: reload test\r\n\r\nbody",
        )?,
        250,
        "2.0.0",
    );
    let queue = gw.queue()?;
    assert_eq!(queue.len(), 1);
    assert_eq!(queue[0]["auth_user"], "carol");

    // Remove alice.
    let (_, r) = auth(&gw, USER, PASSWORD)?;
    expect(&r, 235, "2.7.0");
    let text = std::fs::read_to_string(&creds)?;
    let without_alice: String = text
        .lines()
        .filter(|l| !l.starts_with("alice:"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(without_alice.lines().count(), 2, "bob and carol stay");
    let before = log_lines(&gw, &loaded);
    replace(&creds, without_alice.as_bytes())?;
    wait_for_log(&gw, &loaded, before, Duration::from_secs(3))?;
    let (_, r) = auth(&gw, USER, PASSWORD)?;
    expect(&r, 535, "5.7.8");
    let (_, r) = auth(&gw, "carol", carol_password)?;
    expect(&r, 235, "2.7.0");
    Ok(())
}

#[test]
fn broken_credentials_file_is_not_loaded() -> Result<()> {
    let gw = TestGateway::start(|_| {})?;
    let creds = gw.credentials_file().to_owned();
    let needles = ["file change not loaded", "credentials"];
    let before = log_lines(&gw, &needles);
    // A good file with one bad line (a plaintext password) after it.
    let mut text = std::fs::read_to_string(&creds)?;
    text.push_str("mallory:hunter2:*\n");
    replace(&creds, text.as_bytes())?;
    wait_for_log(&gw, &needles, before, Duration::from_secs(3))?;
    let log = gw.log();
    assert!(log.contains("line 3"), "the error names the line: {log}");
    assert!(
        !log.contains("hunter2"),
        "the error does not show the content"
    );
    // The users loaded before stay in force.
    let (_, r) = auth(&gw, USER, PASSWORD)?;
    expect(&r, 235, "2.7.0");
    Ok(())
}
