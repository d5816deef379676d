//! Who may send as whom: an authenticated user may only use the sender addresses of
//! their credentials line (a domain, `@example.com`, or one address), compared without
//! regard to case; the null sender is refused on submission. Checked with swaks and
//! with Python's smtplib, for an Argon2 and a bcrypt user.

use anyhow::Result;
use postern_tests::gateway::{PASSWORD, TestGateway, USER};
use postern_tests::peers::Swaks;
use postern_tests::smtplib::{self, assert_failure, assert_reply, strs};

#[test]
fn swaks_sender_not_owned_by_the_user_is_refused() {
    let gw = TestGateway::start(|_| {}).unwrap();
    let (ok, out) = Swaks::new(gw.submission, "--tls --auth PLAIN")
        .login(USER, PASSWORD)
        .envelope("ceo@elsewhere.example", "x@example.net")
        .run();
    assert!(!ok, "{out}");
    assert!(
        out.contains(
            "553 5.7.1 <ceo@elsewhere.example>: Sender address rejected: not owned by user alice"
        ),
        "{out}"
    );
    assert!(gw.queue().unwrap().is_empty());
}

/// What smtplib does in [`smtplib_sender_must_be_owned_by_the_user`].
const SENDER_MUST_BE_OWNED_BY_THE_USER_SCRIPT: &str = r#"
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
"#;

#[test]
fn smtplib_sender_must_be_owned_by_the_user() -> Result<()> {
    let (gw, out) = smtplib::run(|_| {}, SENDER_MUST_BE_OWNED_BY_THE_USER_SCRIPT)?;
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

/// What smtplib does in [`smtplib_bcrypt_user_sends_as_own_address_only`].
const BCRYPT_USER_SENDS_AS_OWN_ADDRESS_ONLY_SCRIPT: &str = r#"
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
"#;

#[test]
fn smtplib_bcrypt_user_sends_as_own_address_only() -> Result<()> {
    let (gw, out) = smtplib::run(|_| {}, BCRYPT_USER_SENDS_AS_OWN_ADDRESS_ONLY_SCRIPT)?;
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
