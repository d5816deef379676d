//! Python's `smtplib` as a real, independent SMTP client against the gateway:
//! STARTTLS on 587, implicit TLS on 465, AUTH PLAIN and LOGIN as smtplib speaks them,
//! SMTPUTF8, and the refusals an ordinary client library sees (with their exact codes).
//!
//! Each test runs one `python3 -c` script; the script prints one JSON object that the
//! test asserts. Ports and passwords reach the script through the environment.

use std::process::Command;

use anyhow::{Context, Result, bail};
use postern_tests::gateway::{BCRYPT_PASSWORD, BCRYPT_USER, PASSWORD, TestGateway, USER, require};
use serde_json::Value;

/// Shared start of every script: connection helpers and exception reporting.
const PRELUDE: &str = r#"
import base64, json, os, smtplib, ssl, sys

HOST = "127.0.0.1"
SUBMISSION = int(os.environ["POSTERN_SUBMISSION"])
SUBMISSIONS = int(os.environ["POSTERN_SUBMISSIONS"])
USER = os.environ["POSTERN_USER"]
PASSWORD = os.environ["POSTERN_PASSWORD"]
BOB = os.environ["POSTERN_BOB"]
BOB_PASSWORD = os.environ["POSTERN_BOB_PASSWORD"]

def insecure():
    # The gateway's certificate is self-signed; these tests check SMTP, not PKI.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx

def reply(r):
    code, text = r
    return [code, text.decode("utf-8", "replace")]

def failure(e):
    d = {"type": type(e).__name__}
    if isinstance(e, smtplib.SMTPRecipientsRefused):
        d["recipients"] = {k: reply(v) for k, v in e.recipients.items()}
    elif hasattr(e, "smtp_code"):
        d["code"] = e.smtp_code
        err = e.smtp_error
        d["text"] = err.decode("utf-8", "replace") if isinstance(err, bytes) else str(err)
    return d

def submission(login=True):
    s = smtplib.SMTP(HOST, SUBMISSION, local_hostname="client.test", timeout=15)
    s.ehlo()
    s.starttls(context=insecure())
    s.ehlo()
    if login:
        s.login(USER, PASSWORD)
    return s

def message(sender, rcpts, subject, body):
    return ("From: %s\r\nTo: %s\r\nSubject: %s\r\n\r\n%s" % (sender, ", ".join(rcpts), subject, body))

out = {}
"#;

/// Runs `script` after [`PRELUDE`] and returns the JSON object it left in `out`.
fn python(gw: &TestGateway, script: &str) -> Result<Value> {
    let py = require("python3");
    let program = format!("{PRELUDE}\n{script}\nprint(json.dumps(out))\n");
    let output = Command::new(py)
        .arg("-c")
        .arg(&program)
        .env("POSTERN_SUBMISSION", gw.submission.port().to_string())
        .env("POSTERN_SUBMISSIONS", gw.submissions.port().to_string())
        .env("POSTERN_USER", USER)
        .env("POSTERN_PASSWORD", PASSWORD)
        .env("POSTERN_BOB", BCRYPT_USER)
        .env("POSTERN_BOB_PASSWORD", BCRYPT_PASSWORD)
        .output()
        .context("running python3")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!(
            "python3 failed ({}):\n{stderr}\nstdout:\n{stdout}",
            output.status
        );
    }
    let last = stdout.lines().last().context("python3 printed nothing")?;
    serde_json::from_str(last)
        .with_context(|| format!("python3 output {last:?}; stderr:\n{stderr}"))
}

/// `[code, text]` as the prelude's `reply()` renders it: asserts the code and that the
/// text starts with the enhanced status code.
fn assert_reply(v: &Value, code: u64, enhanced: &str) {
    assert_eq!(v[0].as_u64(), Some(code), "reply {v}");
    let text = v[1].as_str().unwrap_or_default();
    assert!(
        text.starts_with(enhanced),
        "reply {v} should start with {enhanced}"
    );
}

/// An smtplib exception as the prelude's `failure()` renders it.
fn assert_failure(v: &Value, kind: &str, code: u64, enhanced: &str) {
    assert_eq!(v["type"].as_str(), Some(kind), "exception {v}");
    assert_eq!(v["code"].as_u64(), Some(code), "exception {v}");
    let text = v["text"].as_str().unwrap_or_default();
    assert!(
        text.starts_with(enhanced),
        "exception {v} should start with {enhanced}"
    );
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn starttls_login_and_sendmail_to_two_recipients() -> Result<()> {
    let gw = TestGateway::start(|_| {})?;
    let out = python(
        &gw,
        r#"
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
"#,
    )?;
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

#[test]
fn implicit_tls_with_auth_login() -> Result<()> {
    let gw = TestGateway::start(|_| {})?;
    let out = python(
        &gw,
        r#"
s = smtplib.SMTP_SSL(HOST, SUBMISSIONS, local_hostname="client.test", context=insecure(), timeout=15)
s.ehlo()
out["features"] = sorted(s.esmtp_features)
out["auth"] = s.esmtp_features.get("auth", "")
s.user, s.password = USER, PASSWORD
# LOGIN with the user name as initial response, then the Password: challenge.
out["login_initial"] = reply(s.auth("LOGIN", s.auth_login))
out["refused"] = s.sendmail("alice@example.com", ["one@example.net"], message("alice@example.com", ["one@example.net"], "first", "first body\r\n"))
s.quit()

s = smtplib.SMTP_SSL(HOST, SUBMISSIONS, local_hostname="client.test", context=insecure(), timeout=15)
s.ehlo()
s.user, s.password = USER, PASSWORD
# LOGIN without initial response: Username: and Password: challenges.
out["login_challenges"] = reply(s.auth("LOGIN", s.auth_login, initial_response_ok=False))
out["refused2"] = s.sendmail("alice@example.com", ["two@example.net"], message("alice@example.com", ["two@example.net"], "second", "second body\r\n"))
s.quit()

s = smtplib.SMTP_SSL(HOST, SUBMISSIONS, local_hostname="client.test", context=insecure(), timeout=15)
s.ehlo()
s.user, s.password = USER, PASSWORD + "x"
try:
    s.auth("LOGIN", s.auth_login)
    out["bad_login"] = "accepted"
except smtplib.SMTPException as e:
    out["bad_login"] = failure(e)
s.close()
"#,
    )?;
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

#[test]
fn smtputf8_recipient_and_subject() -> Result<()> {
    let gw = TestGateway::start(|_| {})?;
    let out = python(
        &gw,
        r#"
s = submission()
out["smtputf8"] = s.has_extn("smtputf8")
msg = message("alice@example.com", ["zoë@example.net"], "Grüße aus Zürich ✉", "Körper: ünïcödé\r\n").encode("utf-8")
out["refused"] = s.sendmail("alice@example.com", ["zoë@example.net"], msg, mail_options=["SMTPUTF8"])
s.quit()

# Without SMTPUTF8 on MAIL. smtplib would not even encode a non-ASCII address then,
# so let it send UTF-8 commands anyway and see what the gateway says.
s = submission()
s.command_encoding = "utf-8"
try:
    s.sendmail("alice@example.com", ["zoë@example.net"], b"Subject: x\r\n\r\nx\r\n")
    out["rcpt_without"] = "accepted"
except smtplib.SMTPException as e:
    out["rcpt_without"] = failure(e)
s.command_encoding = "utf-8"  # smtplib's RSET after the refusal set it back to ASCII
try:
    s.sendmail("zoë@example.com", ["someone@example.net"], b"Subject: x\r\n\r\nx\r\n")
    out["sender_without"] = "accepted"
except smtplib.SMTPException as e:
    out["sender_without"] = failure(e)
s.quit()
"#,
    )?;
    assert_eq!(out["smtputf8"], true, "{out}");
    assert_eq!(out["refused"], serde_json::json!({}), "{out}");
    let refused = &out["rcpt_without"];
    assert_eq!(refused["type"], "SMTPRecipientsRefused", "{out}");
    assert_reply(&refused["recipients"]["zoë@example.net"], 553, "5.6.7");
    assert_failure(&out["sender_without"], "SMTPSenderRefused", 553, "5.6.7");

    let queue = gw.queue()?;
    assert_eq!(
        queue.len(),
        1,
        "only the SMTPUTF8 message is queued: {queue:?}"
    );
    assert_eq!(strs(&queue[0]["recipients"]), ["zoë@example.net"]);
    assert_eq!(queue[0]["auth_user"], "alice");
    let id = queue[0]["id"].as_str().context("id")?;
    let content = gw.message(id)?;
    let text = String::from_utf8_lossy(&content);
    assert!(text.contains(&format!("with UTF8SMTPSA id {id}")), "{text}");
    assert!(text.contains("for <zoë@example.net>;"), "{text}");
    assert!(
        contains(&content, "\r\nSubject: Grüße aus Zürich ✉\r\n".as_bytes()),
        "{text}"
    );
    assert!(
        content.ends_with("\r\n\r\nKörper: ünïcödé\r\n".as_bytes()),
        "{text}"
    );
    Ok(())
}

#[test]
fn auth_is_refused_before_starttls() -> Result<()> {
    let gw = TestGateway::start(|_| {})?;
    let out = python(
        &gw,
        r#"
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
"#,
    )?;
    assert_eq!(out["auth_advertised"], false, "{out}");
    assert_eq!(out["login"]["type"], "SMTPNotSupportedError", "{out}");
    assert_reply(&out["raw_auth"], 530, "5.7.0");
    assert_reply(&out["mail"], 530, "5.7.0");
    assert_reply(&out["login_after"], 235, "2.7.0");
    assert!(gw.queue()?.is_empty());
    Ok(())
}

#[test]
fn wrong_password_then_right_one() -> Result<()> {
    let gw = TestGateway::start(|_| {})?;
    let out = python(
        &gw,
        r#"
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
"#,
    )?;
    assert_failure(&out["wrong"], "SMTPAuthenticationError", 535, "5.7.8");
    // An unknown user gets exactly the same answer as a wrong password.
    assert_eq!(out["unknown"], out["wrong"], "{out}");
    assert_reply(&out["right"], 235, "2.7.0");
    Ok(())
}

#[test]
fn sender_must_be_owned_by_the_user() -> Result<()> {
    let gw = TestGateway::start(|_| {})?;
    let out = python(
        &gw,
        r#"
s = submission()
try:
    s.sendmail("x@other.example", ["someone@example.net"], b"Subject: x\r\n\r\nx\r\n")
    out["other_domain"] = "accepted"
except smtplib.SMTPException as e:
    out["other_domain"] = failure(e)
try:
    s.sendmail("", ["someone@example.net"], b"Subject: x\r\n\r\nx\r\n")
    out["null_sender"] = "accepted"
except smtplib.SMTPException as e:
    out["null_sender"] = failure(e)
out["own"] = s.sendmail("Anyone@Example.COM", ["someone@example.net"], b"Subject: own\r\n\r\nown\r\n")
s.quit()
"#,
    )?;
    assert_failure(&out["other_domain"], "SMTPSenderRefused", 553, "5.7.1");
    let text = out["other_domain"]["text"].as_str().unwrap_or_default();
    assert!(
        text.contains("<x@other.example>: Sender address rejected: not owned by user alice"),
        "{out}"
    );
    assert_failure(&out["null_sender"], "SMTPSenderRefused", 553, "5.7.1");
    assert_eq!(out["own"], serde_json::json!({}), "{out}");
    let queue = gw.queue()?;
    assert_eq!(queue.len(), 1, "{queue:?}");
    assert_eq!(queue[0]["sender"], "Anyone@Example.COM");
    Ok(())
}

#[test]
fn bcrypt_user_sends_as_own_address_only() -> Result<()> {
    let gw = TestGateway::start(|_| {})?;
    let out = python(
        &gw,
        r#"
s = smtplib.SMTP(HOST, SUBMISSION, local_hostname="client.test", timeout=15)
s.starttls(context=insecure())
s.ehlo()
out["login"] = reply(s.login(BOB, BOB_PASSWORD))
out["own"] = s.sendmail("bob@example.org", ["friend@example.net"], b"Subject: from bob\r\n\r\nhi\r\n")
for sender in ["alice@example.com", "other@example.org"]:
    try:
        s.sendmail(sender, ["friend@example.net"], b"Subject: x\r\n\r\nx\r\n")
        out[sender] = "accepted"
    except smtplib.SMTPException as e:
        out[sender] = failure(e)
s.quit()
"#,
    )?;
    assert_reply(&out["login"], 235, "2.7.0");
    assert_eq!(out["own"], serde_json::json!({}), "{out}");
    assert_failure(&out["alice@example.com"], "SMTPSenderRefused", 553, "5.7.1");
    assert_failure(&out["other@example.org"], "SMTPSenderRefused", 553, "5.7.1");
    let queue = gw.queue()?;
    assert_eq!(queue.len(), 1, "{queue:?}");
    assert_eq!(queue[0]["sender"], "bob@example.org");
    assert_eq!(queue[0]["auth_user"], "bob");
    assert_eq!(strs(&queue[0]["recipients"]), ["friend@example.net"]);
    Ok(())
}

#[test]
fn message_size_limit() -> Result<()> {
    let gw = TestGateway::start(|c| c.limits.max_message_size = 10_000)?;
    let out = python(
        &gw,
        r#"
def sized(n, tag):
    head = "Subject: %s\r\n\r\n" % tag
    line = "x" * 98 + "\r\n"
    body = line * ((n - len(head)) // len(line))
    body += "y" * (n - len(head) - len(body) - 2) + "\r\n"
    m = (head + body).encode()
    assert len(m) == n, (len(m), n)
    return m

s = submission()
out["size"] = s.esmtp_features.get("size", "")
# smtplib declares SIZE= itself: refused at MAIL.
try:
    s.sendmail("alice@example.com", ["a@example.net"], sized(20000, "declared"))
    out["declared"] = "accepted"
except smtplib.SMTPException as e:
    out["declared"] = failure(e)
out["mail_size"] = reply(s.mail("alice@example.com", ["SIZE=10001"]))
s.rset()
out["mail_size_ok"] = reply(s.mail("alice@example.com", ["SIZE=10000"]))
s.rset()
# Without SIZE= the limit holds during the transfer.
del s.esmtp_features["size"]
try:
    s.sendmail("alice@example.com", ["a@example.net"], sized(20000, "undeclared"))
    out["undeclared"] = "accepted"
except smtplib.SMTPException as e:
    out["undeclared"] = failure(e)
try:
    s.sendmail("alice@example.com", ["a@example.net"], sized(10001, "one-over"))
    out["one_over"] = "accepted"
except smtplib.SMTPException as e:
    out["one_over"] = failure(e)
# The session goes on, and a message of exactly the limit fits.
out["at_limit"] = s.sendmail("alice@example.com", ["a@example.net"], sized(10000, "at-limit"))
s.quit()
"#,
    )?;
    assert_eq!(out["size"], "10000", "{out}");
    assert_failure(&out["declared"], "SMTPSenderRefused", 552, "5.3.4");
    assert_reply(&out["mail_size"], 552, "5.3.4");
    assert_reply(&out["mail_size_ok"], 250, "2.1.0");
    assert_failure(&out["undeclared"], "SMTPDataError", 552, "5.3.4");
    assert_failure(&out["one_over"], "SMTPDataError", 552, "5.3.4");
    assert_eq!(out["at_limit"], serde_json::json!({}), "{out}");
    let queue = gw.queue()?;
    assert_eq!(
        queue.len(),
        1,
        "only the message at the limit is queued: {queue:?}"
    );
    let id = queue[0]["id"].as_str().context("id")?;
    let content = gw.message(id)?;
    assert!(contains(&content, b"\r\nSubject: at-limit\r\n"));
    Ok(())
}
