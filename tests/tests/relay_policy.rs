//! The relay port is not an open relay: without a trusted network it refuses every
//! recipient (554 5.7.1 Relay access denied), from a trusted network it relays for
//! anyone, after STARTTLS and AUTH it relays for the user (whose sender rules apply);
//! trust is for the relay listener only. Checked with swaks and with the byte-exact
//! client.

use anyhow::{Context, Result};
use postern_tests::gateway::{PASSWORD, TestGateway, USER, trust_loopback};
use postern_tests::peers::Swaks;
use postern_tests::reply::expect;
use postern_tests::smtp::{Smtp, plain};

#[test]
fn swaks_relay_port_is_not_an_open_relay() {
    let gw = TestGateway::start(|_| {}).unwrap();
    let (ok, out) = Swaks::new(gw.relay, "")
        .envelope("a@example.com", "x@example.net")
        .run();
    assert!(!ok, "{out}");
    assert!(
        out.contains("554 5.7.1 <x@example.net>: Relay access denied"),
        "{out}"
    );
    assert!(gw.queue().unwrap().is_empty());
}

#[test]
fn swaks_relay_port_relays_for_trusted_networks() {
    let gw = TestGateway::start(trust_loopback).unwrap();
    let (ok, out) = Swaks::new(gw.relay, "")
        .envelope("a@example.com", "x@example.net")
        .run();
    assert!(ok, "{out}");
    assert_eq!(gw.queue().unwrap().len(), 1);
}

#[test]
fn relay_denied_without_trusted_networks() -> Result<()> {
    let gw = TestGateway::start(|_| {})?;
    let mut s = Smtp::connect_admitted(gw.relay)?;
    let r = s.ehlo()?;
    assert!(!r.text.contains("AUTH"), "no AUTH before TLS: {:?}", r.text);
    expect(&s.cmd("MAIL FROM:<app@example.com>")?, 250, "2.1.0");
    let r = s.cmd("RCPT TO:<someone@example.net>")?;
    expect(&r, 554, "5.7.1");
    assert!(
        r.last_line()
            .ends_with("<someone@example.net>: Relay access denied"),
        "{:?}",
        r.text
    );
    let r = s.cmd("DATA")?;
    expect(&r, 554, "5.5.1");
    assert!(gw.queue()?.is_empty());
    Ok(())
}

#[test]
fn relay_allowed_from_trusted_network() -> Result<()> {
    let gw = TestGateway::start(trust_loopback)?;
    let mut s = Smtp::connect_admitted(gw.relay)?;
    s.ehlo()?;
    let r = s.send_message(
        "app@anywhere.example",
        &["someone@example.net"],
        "Subject: test\r\n\r\ntrusted",
    )?;
    expect(&r, 250, "2.0.0");
    expect(&s.cmd("QUIT")?, 221, "2.0.0");
    let queue = gw.queue()?;
    assert_eq!(queue.len(), 1, "{queue:?}");
    assert_eq!(queue[0]["sender"], "app@anywhere.example");
    assert_eq!(queue[0]["auth_user"], serde_json::Value::Null);
    let id = queue[0]["id"].as_str().context("id")?;
    let content = String::from_utf8(gw.message(id)?)?;
    assert!(
        content.contains(&format!("with ESMTP id {id}")),
        "{content}"
    );
    // Trust is for the relay listener only: submission still wants TLS and AUTH.
    let mut sub = Smtp::connect_admitted(gw.submission)?;
    sub.ehlo()?;
    expect(&sub.cmd("MAIL FROM:<app@example.com>")?, 530, "5.7.0");
    Ok(())
}

#[test]
fn relay_after_starttls_and_auth() -> Result<()> {
    let gw = TestGateway::start(|_| {})?;
    let mut s = Smtp::connect_admitted(gw.relay)?;
    let r = s.ehlo()?;
    assert!(r.text.contains("STARTTLS"), "{:?}", r.text);
    expect(&s.cmd("STARTTLS")?, 220, "2.0.0");
    let mut s = s.upgrade()?;
    let r = s.ehlo()?;
    assert!(r.text.contains("250-AUTH PLAIN LOGIN") || r.text.contains("250 AUTH PLAIN LOGIN"));
    // TLS alone does not make a client trusted.
    expect(&s.cmd("MAIL FROM:<alice@example.com>")?, 250, "2.1.0");
    expect(&s.cmd("RCPT TO:<someone@example.net>")?, 554, "5.7.1");
    expect(&s.cmd("RSET")?, 250, "2.0.0");
    expect(
        &s.cmd(&format!("AUTH PLAIN {}", plain(USER, PASSWORD)))?,
        235,
        "2.7.0",
    );
    // Authenticated, the user's sender rules apply here too.
    expect(&s.cmd("MAIL FROM:<x@other.example>")?, 553, "5.7.1");
    let r = s.send_message(
        "alice@example.com",
        &["someone@example.net"],
        "Subject: test\r\n\r\nrelayed",
    )?;
    expect(&r, 250, "2.0.0");
    let queue = gw.queue()?;
    assert_eq!(queue.len(), 1, "{queue:?}");
    assert_eq!(queue[0]["auth_user"], "alice");
    let id = queue[0]["id"].as_str().context("id")?;
    let content = String::from_utf8(gw.message(id)?)?;
    assert!(
        content.contains(&format!("with ESMTPSA id {id}")),
        "{content}"
    );
    Ok(())
}
