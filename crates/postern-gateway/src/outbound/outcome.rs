//! What became of a recipient, as data: delivered, deferred or bounced, each with an
//! RFC 3463 enhanced status and a diagnostic. Decided by the reply class (RFC 5321
//! §4.2.1): 2xx delivers, 4xx defers, 5xx bounces, and a 3xx where a 2xx is required
//! is the server's protocol error, deferred as 4.5.0.

use postern_proto::{EnhancedCode, Reply};

use super::client::ClientError;

/// Why a recipient ended as it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    /// The enhanced status for the log, the metric's class and the DSN.
    pub status: EnhancedCode,
    /// The remote reply or the local reason.
    pub detail: String,
}

impl Reason {
    pub fn new(status: EnhancedCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            detail: detail.into(),
        }
    }

    /// A remote reply's status (its own enhanced code when it matches the reply
    /// class, otherwise one made from the class) and its text.
    pub fn of_reply(r: &Reply) -> Self {
        let status = if r.is_intermediate() {
            EnhancedCode(4, 5, 0)
        } else {
            match r.enhanced {
                Some(e) if u16::from(e.0) == r.code / 100 => e,
                _ => EnhancedCode((r.code / 100).clamp(2, 5) as u8, 0, 0),
            }
        };
        Self::new(status, r.to_string())
    }

    /// A failed session: the server's own temporary status when it refused
    /// something, 4.4.0 for a permanent refusal of the session itself (another host
    /// or a later try may take the mail), otherwise a network failure (4.4.2).
    pub fn of_session(e: &ClientError, detail: impl Into<String>) -> Self {
        let status = match e {
            ClientError::Rejected { reply, .. } if reply.is_transient() => {
                Self::of_reply(reply).status
            }
            ClientError::Rejected { .. } => EnhancedCode(4, 4, 0),
            _ => EnhancedCode(4, 4, 2),
        };
        Self::new(status, detail)
    }

    /// The class digit of the status as a metric label: "2", "4" or "5".
    pub fn class_label(&self) -> &'static str {
        match self.status.0 {
            2 => "2",
            4 => "4",
            _ => "5",
        }
    }
}

/// The fate of one recipient in a delivery run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered(Reason),
    Deferred(Reason),
    Bounced(Reason),
}

impl Outcome {
    /// Decided by the reply that settled the recipient.
    pub fn of_reply(r: &Reply) -> Self {
        let reason = Reason::of_reply(r);
        if r.is_completion() {
            Outcome::Delivered(reason)
        } else if r.is_permanent() {
            Outcome::Bounced(reason)
        } else {
            Outcome::Deferred(reason)
        }
    }

    pub fn reason(&self) -> &Reason {
        match self {
            Outcome::Delivered(r) | Outcome::Deferred(r) | Outcome::Bounced(r) => r,
        }
    }

    /// "delivered", "deferred" or "bounced", for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Delivered(_) => "delivered",
            Outcome::Deferred(_) => "deferred",
            Outcome::Bounced(_) => "bounced",
        }
    }
}

/// What TLS a delivery used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsUsed {
    None,
    Unverified,
    Verified,
}

impl TlsUsed {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            TlsUsed::None => "none",
            TlsUsed::Unverified => "opportunistic",
            TlsUsed::Verified => "verified",
        }
    }
}

/// One recipient's result.
#[derive(Debug, Clone)]
pub struct RcptResult {
    /// Index in the message's recipient list.
    pub index: usize,
    pub outcome: Outcome,
    /// The host that answered, `name[ip]`.
    pub remote: Option<String>,
    pub tls: TlsUsed,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(code: u16, enhanced: Option<EnhancedCode>) -> Reply {
        Reply {
            code,
            enhanced,
            lines: vec!["x".into()],
        }
    }

    #[test]
    fn outcomes_follow_the_reply_class() {
        let status = |reply: &Reply| Reason::of_reply(reply).status.to_string();
        assert_eq!(status(&r(550, Some(EnhancedCode(5, 1, 1)))), "5.1.1");
        assert_eq!(status(&r(550, None)), "5.0.0");
        // A mismatched enhanced code is not trusted.
        assert_eq!(status(&r(450, Some(EnhancedCode(5, 1, 1)))), "4.0.0");
        assert!(matches!(
            Outcome::of_reply(&r(251, None)),
            Outcome::Delivered(_)
        ));
        assert!(matches!(
            Outcome::of_reply(&r(452, None)),
            Outcome::Deferred(_)
        ));
        assert!(matches!(
            Outcome::of_reply(&r(554, None)),
            Outcome::Bounced(_)
        ));
    }

    /// A 3xx where a 2xx is required (RCPT, end of data) is never a delivery.
    #[test]
    fn an_intermediate_reply_defers() {
        let o = Outcome::of_reply(&r(354, None));
        assert!(matches!(o, Outcome::Deferred(_)), "{o:?}");
        assert_eq!(o.reason().status, EnhancedCode(4, 5, 0));
        assert_eq!(o.reason().class_label(), "4");
    }

    #[test]
    fn session_failures_defer() {
        use super::super::client::Phase;
        let refused = |code| ClientError::Rejected {
            phase: Phase::Greeting,
            reply: r(code, None),
        };
        assert_eq!(
            Reason::of_session(&refused(421), "").status,
            EnhancedCode(4, 0, 0)
        );
        assert_eq!(
            Reason::of_session(&refused(554), "").status,
            EnhancedCode(4, 4, 0)
        );
        let closed = ClientError::Closed { phase: Phase::Mail };
        assert_eq!(
            Reason::of_session(&closed, "").status,
            EnhancedCode(4, 4, 2)
        );
    }
}
