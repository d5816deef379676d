//! Asserting SMTP replies: the code and enhanced status code of a reply
//! ([`expect`]), a reply code alone ([`expect_code`]), and the queue ID of a
//! `250 … queued as ID` ([`queue_id`]).

use crate::smtp::SmtpReply;

/// Asserts the code and the enhanced status code of a reply's last line.
#[track_caller]
pub fn expect(r: &SmtpReply, code: u16, enhanced: &str) {
    assert_eq!(r.code, code, "reply {:?}", r.text);
    let prefix = format!("{code} {enhanced} ");
    assert!(
        r.last_line().starts_with(&prefix),
        "reply {:?} should start with {prefix:?}",
        r.text
    );
}

/// Asserts a reply's code.
#[track_caller]
pub fn expect_code(r: &SmtpReply, code: u16) {
    assert_eq!(r.code, code, "reply {:?}", r.text);
}

/// The queue ID in the last line of a `250 2.0.0 Ok: queued as ID`.
#[track_caller]
pub fn queue_id(r: &SmtpReply) -> String {
    expect(r, 250, "2.0.0");
    r.last_line()
        .rsplit(' ')
        .next()
        .unwrap_or_default()
        .to_owned()
}
