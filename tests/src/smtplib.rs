//! Python's `smtplib` as a real, independent SMTP client against the gateway: each
//! test runs one `python3 -c` script after [`PRELUDE`]; the script leaves a JSON object
//! in `out`, which [`python`] returns for the test to assert. Ports and passwords
//! reach the script through the environment.

use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::gateway::{BCRYPT_PASSWORD, BCRYPT_USER, PASSWORD, TestGateway, USER};
use crate::peers::require;

/// Shared start of every script: connection helpers and exception reporting.
pub const PRELUDE: &str = r#"
import base64, json, os, smtplib, ssl, sys

HOST = os.environ["POSTERN_SUBMISSION_HOST"]
SUBMISSION = int(os.environ["POSTERN_SUBMISSION"])
TLS_HOST = os.environ["POSTERN_SUBMISSIONS_HOST"]
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
pub fn python(gw: &TestGateway, script: &str) -> Result<Value> {
    let py = require("python3")?;
    let program = format!("{PRELUDE}\n{script}\nprint(json.dumps(out))\n");
    let output = Command::new(py)
        .arg("-c")
        .arg(&program)
        .env("POSTERN_SUBMISSION_HOST", gw.submission.ip().to_string())
        .env("POSTERN_SUBMISSION", gw.submission.port().to_string())
        .env("POSTERN_SUBMISSIONS_HOST", gw.submissions.ip().to_string())
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

/// Starts a gateway (its configuration changed by `tweak`) and runs `script` against
/// it with [`python`]; the gateway, to look at its queue, and the script's `out`.
pub fn run(
    tweak: impl FnOnce(&mut postern_config::GatewayConfig),
    script: &str,
) -> Result<(TestGateway, Value)> {
    let gw = TestGateway::start(tweak)?;
    let out = python(&gw, script)?;
    Ok((gw, out))
}

/// `[code, text]` as the prelude's `reply()` renders it: asserts the code and that the
/// text starts with the enhanced status code.
#[track_caller]
pub fn assert_reply(v: &Value, code: u64, enhanced: &str) {
    assert_eq!(v[0].as_u64(), Some(code), "reply {v}");
    let text = v[1].as_str().unwrap_or_default();
    assert!(
        text.starts_with(enhanced),
        "reply {v} should start with {enhanced}"
    );
}

/// An smtplib exception as the prelude's `failure()` renders it.
#[track_caller]
pub fn assert_failure(v: &Value, kind: &str, code: u64, enhanced: &str) {
    assert_eq!(v["type"].as_str(), Some(kind), "exception {v}");
    assert_eq!(v["code"].as_u64(), Some(code), "exception {v}");
    let text = v["text"].as_str().unwrap_or_default();
    assert!(
        text.starts_with(enhanced),
        "exception {v} should start with {enhanced}"
    );
}

/// The strings of a JSON array.
pub fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
