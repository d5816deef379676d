//! Authentication on the submission ports, with the real clients a mail admin and an
//! application use: swaks (STARTTLS + AUTH PLAIN on 587, implicit TLS + AUTH LOGIN with
//! pipelining on 465) and Python's smtplib (AUTH PLAIN and LOGIN as it speaks them,
//! with and without initial response). No AUTH and no mail before TLS on 587; a wrong
//! password and an unknown user get the same 535 5.7.8. Brute-force limits are in
//! `limits.rs`, credentials reloading in `reload.rs`.

use anyhow::{Context, Result};
use postern_tests::gateway::{PASSWORD, TestGateway, USER};
use postern_tests::peers::Swaks;
use postern_tests::smtplib::{self, assert_failure, assert_reply, contains, strs};

#[test]
fn swaks_starttls_auth_plain_on_submission() {
    let gw = TestGateway::start(|_| {}).unwrap();
    let (ok, out) = Swaks::new(gw.submission, "--tls --auth PLAIN")
        .login(USER, PASSWORD)
        .envelope("app@example.com", "someone@example.net")
        .arg("--header", "Subject: swaks submission")
        .run();
    assert!(ok, "{out}");
    assert!(out.contains("<-  220 2.0.0 Ready to start TLS"), "{out}");
    assert!(
        out.contains("<~  235 2.7.0 Authentication successful"),
        "{out}"
    );
    assert!(out.contains("<~  250 2.0.0 Ok: queued as "), "{out}");
    let q = gw.queue().unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0]["sender"], "app@example.com");
    assert_eq!(q[0]["auth_user"], USER);
    let body = String::from_utf8(gw.message(q[0]["id"].as_str().unwrap()).unwrap()).unwrap();
    assert!(body.contains("Subject: swaks submission"), "{body}");
    assert!(body.starts_with("Received: from "), "{body}");
    assert!(body.contains("with ESMTPSA id"), "{body}");
    assert!(body.contains("(using TLSv1.3 with cipher"), "{body}");
}

#[test]
fn swaks_implicit_tls_auth_login_with_pipelining() {
    let gw = TestGateway::start(|_| {}).unwrap();
    let (ok, out) = Swaks::new(gw.submissions, "--tlsc --pipeline --auth LOGIN")
        .login(USER, PASSWORD)
        .envelope("app@example.com", "a@example.net,b@example.org")
        .run();
    assert!(ok, "{out}");
    assert!(out.contains("250-PIPELINING"), "{out}");
    assert!(out.contains("<~  250 2.0.0 Ok: queued as "), "{out}");
    let q = gw.queue().unwrap();
    assert_eq!(
        q[0]["recipients"],
        serde_json::json!(["a@example.net", "b@example.org"])
    );
}

#[test]
fn swaks_submission_refuses_auth_and_mail_before_tls() {
    let gw = TestGateway::start(|_| {}).unwrap();
    // swaks will not send AUTH that the server does not offer.
    let (ok, out) = Swaks::new(gw.submission, "--auth PLAIN")
        .login(USER, PASSWORD)
        .envelope("app@example.com", "someone@example.net")
        .run();
    assert!(!ok, "{out}");
    assert!(
        !out.contains("AUTH PLAIN LOGIN"),
        "AUTH offered before TLS: {out}"
    );
    let (ok, out) = Swaks::new(gw.submission, "")
        .envelope("app@example.com", "someone@example.net")
        .run();
    assert!(!ok, "{out}");
    assert!(
        out.contains("530 5.7.0 Must issue a STARTTLS command first"),
        "{out}"
    );
    // After TLS but without AUTH.
    let (ok, out) = Swaks::new(gw.submission, "--tls")
        .envelope("app@example.com", "someone@example.net")
        .run();
    assert!(!ok, "{out}");
    assert!(out.contains("530 5.7.0 Authentication required"), "{out}");
    assert!(gw.queue().unwrap().is_empty());
}

#[test]
fn swaks_wrong_password_is_refused() {
    let gw = TestGateway::start(|_| {}).unwrap();
    let (ok, out) = Swaks::new(gw.submission, "--tls --auth PLAIN")
        .login(USER, "not it")
        .envelope("app@example.com", "x@example.net")
        .run();
    assert!(!ok, "{out}");
    assert!(
        out.contains("535 5.7.8 Error: authentication failed"),
        "{out}"
    );
    assert!(gw.queue().unwrap().is_empty());
}

/// What smtplib does in [`smtplib_starttls_login_and_sendmail_to_two_recipients`].
const STARTTLS_LOGIN_AND_SENDMAIL_TO_TWO_RECIPIENTS_SCRIPT: &str = r#"
s = smtplib.SMTP(HOST, SUBMISSION, local_hostname="client.test", timeout=15)
s.ehlo()
out["plain_features"] = sorted(s.esmtp_features)
s.starttls(context=insecure())
s.ehlo()
out["tls_features"] = sorted(s.esmtp_features)
out["auth"] = s.esmtp_features.get("auth", "")
out["login"] = reply(s.login(USER, PASSWORD))
body = "Hello from smtplib, marker 7f3c.\r\n.A line that starts with a dot\r\n"
msg = message("alice@example.com", ["one@example.net", "two@example.org"], "smtplib test", body)
out["refused"] = s.sendmail("alice@example.com", ["one@example.net", "two@example.org"], msg)
out["quit"] = reply(s.quit())
"#;

#[test]
fn smtplib_starttls_login_and_sendmail_to_two_recipients() -> Result<()> {
    let (gw, out) = smtplib::run(|_| {}, STARTTLS_LOGIN_AND_SENDMAIL_TO_TWO_RECIPIENTS_SCRIPT)?;
    let plain = strs(&out["plain_features"]);
    assert!(plain.contains(&"starttls"), "{out}");
    assert!(
        !plain.contains(&"auth"),
        "AUTH must not be offered before TLS: {out}"
    );
    let tls = strs(&out["tls_features"]);
    assert!(!tls.contains(&"starttls"), "{out}");
    assert_eq!(
        out["auth"].as_str().map(str::trim),
        Some("PLAIN LOGIN"),
        "{out}"
    );
    assert_reply(&out["login"], 235, "2.7.0");
    assert_eq!(
        out["refused"],
        serde_json::json!({}),
        "no recipient refused: {out}"
    );
    assert_reply(&out["quit"], 221, "2.0.0");

    let queue = gw.queue()?;
    assert_eq!(queue.len(), 1, "{queue:?}");
    let m = &queue[0];
    assert_eq!(m["sender"], "alice@example.com");
    assert_eq!(
        strs(&m["recipients"]),
        ["one@example.net", "two@example.org"]
    );
    assert_eq!(m["auth_user"], "alice");
    let id = m["id"].as_str().context("id")?;
    let content = gw.message(id)?;
    let text = String::from_utf8_lossy(&content);
    assert!(
        text.starts_with("Received: from client.test ([127.0.0.1])\r\n\tby gateway.test (Postern) with ESMTPSA id "),
        "{text}"
    );
    assert!(
        text.contains(&format!("with ESMTPSA id {id}\r\n\t(using TLSv1.")),
        "{text}"
    );
    assert!(
        !text.contains("authenticated sender"),
        "the user is not named by default: {text}"
    );
    assert!(
        contains(&content, b"\r\nSubject: smtplib test\r\n"),
        "{text}"
    );
    assert!(
        contains(&content, b"\r\n\r\nHello from smtplib, marker 7f3c.\r\n"),
        "{text}"
    );
    // smtplib dot-stuffs; the queue holds the line as the user wrote it.
    assert!(
        content.ends_with(b"\r\n.A line that starts with a dot\r\n"),
        "{text}"
    );
    assert_eq!(m["size"].as_u64(), Some(content.len() as u64), "{m}");
    Ok(())
}

/// What smtplib does in [`smtplib_implicit_tls_with_auth_login`].
const IMPLICIT_TLS_WITH_AUTH_LOGIN_SCRIPT: &str = r#"
s = smtplib.SMTP_SSL(TLS_HOST, SUBMISSIONS, local_hostname="client.test", context=insecure(), timeout=15)
s.ehlo()
out["features"] = sorted(s.esmtp_features)
out["auth"] = s.esmtp_features.get("auth", "")
s.user, s.password = USER, PASSWORD
# LOGIN with the user name as initial response, then the Password: challenge.
out["login_initial"] = reply(s.auth("LOGIN", s.auth_login))
out["refused"] = s.sendmail("alice@example.com", ["one@example.net"], message("alice@example.com", ["one@example.net"], "first", "first body\r\n"))
s.quit()

s = smtplib.SMTP_SSL(TLS_HOST, SUBMISSIONS, local_hostname="client.test", context=insecure(), timeout=15)
s.ehlo()
s.user, s.password = USER, PASSWORD
# LOGIN without initial response: Username: and Password: challenges.
out["login_challenges"] = reply(s.auth("LOGIN", s.auth_login, initial_response_ok=False))
out["refused2"] = s.sendmail("alice@example.com", ["two@example.net"], message("alice@example.com", ["two@example.net"], "second", "second body\r\n"))
s.quit()

s = smtplib.SMTP_SSL(TLS_HOST, SUBMISSIONS, local_hostname="client.test", context=insecure(), timeout=15)
s.ehlo()
s.user, s.password = USER, PASSWORD + "x"
try:
    s.auth("LOGIN", s.auth_login)
    out["bad_login"] = "accepted"
except smtplib.SMTPException as e:
    out["bad_login"] = failure(e)
s.close()
"#;

#[test]
fn smtplib_implicit_tls_with_auth_login() -> Result<()> {
    let (gw, out) = smtplib::run(|_| {}, IMPLICIT_TLS_WITH_AUTH_LOGIN_SCRIPT)?;
    let features = strs(&out["features"]);
    assert!(
        !features.contains(&"starttls"),
        "no STARTTLS inside TLS: {out}"
    );
    assert_eq!(
        out["auth"].as_str().map(str::trim),
        Some("PLAIN LOGIN"),
        "{out}"
    );
    assert_reply(&out["login_initial"], 235, "2.7.0");
    assert_reply(&out["login_challenges"], 235, "2.7.0");
    assert_eq!(out["refused"], serde_json::json!({}), "{out}");
    assert_eq!(out["refused2"], serde_json::json!({}), "{out}");
    assert_failure(&out["bad_login"], "SMTPAuthenticationError", 535, "5.7.8");

    let queue = gw.queue()?;
    assert_eq!(queue.len(), 2, "{queue:?}");
    let mut rcpts: Vec<&str> = queue.iter().flat_map(|m| strs(&m["recipients"])).collect();
    rcpts.sort_unstable();
    assert_eq!(rcpts, ["one@example.net", "two@example.net"]);
    for m in &queue {
        assert_eq!(m["auth_user"], "alice", "{m}");
        let id = m["id"].as_str().context("id")?;
        let content = gw.message(id)?;
        let text = String::from_utf8_lossy(&content);
        assert!(text.contains(&format!("with ESMTPSA id {id}")), "{text}");
    }
    Ok(())
}

/// What smtplib does in [`smtplib_auth_is_refused_before_starttls`].
const AUTH_IS_REFUSED_BEFORE_STARTTLS_SCRIPT: &str = r#"
s = smtplib.SMTP(HOST, SUBMISSION, local_hostname="client.test", timeout=15)
s.ehlo()
out["auth_advertised"] = s.has_extn("auth")
try:
    s.login(USER, PASSWORD)
    out["login"] = "accepted"
except smtplib.SMTPException as e:
    out["login"] = failure(e)
creds = base64.b64encode(("\0%s\0%s" % (USER, PASSWORD)).encode()).decode()
out["raw_auth"] = reply(s.docmd("AUTH", "PLAIN " + creds))
out["mail"] = reply(s.docmd("MAIL", "FROM:<alice@example.com>"))
# The same connection can still upgrade and authenticate.
s.starttls(context=insecure())
s.ehlo()
out["login_after"] = reply(s.login(USER, PASSWORD))
s.quit()
"#;

#[test]
fn smtplib_auth_is_refused_before_starttls() -> Result<()> {
    let (gw, out) = smtplib::run(|_| {}, AUTH_IS_REFUSED_BEFORE_STARTTLS_SCRIPT)?;
    assert_eq!(out["auth_advertised"], false, "{out}");
    assert_eq!(out["login"]["type"], "SMTPNotSupportedError", "{out}");
    assert_reply(&out["raw_auth"], 530, "5.7.0");
    assert_reply(&out["mail"], 530, "5.7.0");
    assert_reply(&out["login_after"], 235, "2.7.0");
    assert!(gw.queue()?.is_empty());
    Ok(())
}

/// What smtplib does in [`smtplib_wrong_password_then_right_one`].
const WRONG_PASSWORD_THEN_RIGHT_ONE_SCRIPT: &str = r#"
s = submission(login=False)
try:
    s.login(USER, "not the password")
    out["wrong"] = "accepted"
except smtplib.SMTPException as e:
    out["wrong"] = failure(e)
try:
    s.login("mallory", PASSWORD)
    out["unknown"] = "accepted"
except smtplib.SMTPException as e:
    out["unknown"] = failure(e)
out["right"] = reply(s.login(USER, PASSWORD))
s.quit()
"#;

#[test]
fn smtplib_wrong_password_then_right_one() -> Result<()> {
    let (_gw, out) = smtplib::run(|_| {}, WRONG_PASSWORD_THEN_RIGHT_ONE_SCRIPT)?;
    assert_failure(&out["wrong"], "SMTPAuthenticationError", 535, "5.7.8");
    // An unknown user gets exactly the same answer as a wrong password.
    assert_eq!(out["unknown"], out["wrong"], "{out}");
    assert_reply(&out["right"], 235, "2.7.0");
    Ok(())
}
