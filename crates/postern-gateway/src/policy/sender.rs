//! Who may start a transaction and with which sender: on submission listeners (587,
//! 465) TLS and then AUTH come first (RFC 6409, RFC 8314); an authenticated user may
//! only use the sender addresses the credentials file allows them (never the null
//! sender).

use postern_config::ListenerKind;
use postern_proto::ReversePath;

use super::Refusal;
use crate::auth::User;

/// Whether the listener requires TLS and AUTH before mail.
pub fn is_submission(kind: ListenerKind) -> bool {
    matches!(kind, ListenerKind::Submission | ListenerKind::Submissions)
}

/// Whether a session may open a transaction at all.
pub fn may_start_transaction(
    kind: ListenerKind,
    tls: bool,
    authenticated: bool,
) -> Result<(), Refusal> {
    if is_submission(kind) && !tls {
        Err(Refusal::TlsRequired)
    } else if is_submission(kind) && !authenticated {
        Err(Refusal::AuthRequired)
    } else {
        Ok(())
    }
}

/// Whether `user` (if the session authenticated) may send as `from`.
pub fn may_send_as(user: Option<&User>, from: &ReversePath) -> Result<(), Refusal> {
    let Some(user) = user else { return Ok(()) };
    let allowed = match from {
        ReversePath::Address(a) => user.may_send_as(&a.to_string()),
        ReversePath::Null => false,
    };
    if allowed {
        Ok(())
    } else {
        Err(Refusal::SenderNotOwned {
            sender: from.to_string(),
            user: user.name.clone(),
        })
    }
}
