//! Every refusal the gateway gives a client, in one place: the reply text is chosen
//! here once, so the same refusal reads the same wherever it happens, and a test can
//! name a refusal rather than match text.

use std::borrow::Cow;

use postern_proto::{ContentFault, EnhancedCode, Reply};

/// A refusal: a command, a transaction or a connection the gateway will not serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    // Order of commands (503 5.5.1).
    NeedEhlo,
    NeedHeloOrEhlo,
    NeedMail,
    NeedRcpt,
    NestedMail,
    TransactionInProgress,
    AlreadyAuthenticated,
    TlsAlreadyActive,
    DuringBdat(&'static str),
    NoValidRecipients,
    // Security (5.7.x).
    TlsRequired,
    AuthRequired,
    AuthNotEnabled,
    UnknownMechanism,
    AuthAborted,
    SaslUndecodable,
    AuthFailed,
    /// Too many logins wait for a password verification.
    AuthBusy,
    SenderNotOwned {
        sender: String,
        user: String,
    },
    RelayDenied {
        recipient: String,
    },
    // Addresses.
    Postmaster,
    SenderNeedsSmtputf8,
    RecipientNeedsSmtputf8,
    // Limits and resources.
    LowSpace,
    MessageRate,
    TooManyRecipients {
        limit: usize,
    },
    DeclaredSizeTooLarge {
        limit: u64,
    },
    MessageTooLarge {
        limit: u64,
    },
    ExpnUnsupported,
    TlsUnavailable,
    QueueWriteError,
    /// The content broke a rule (RFC 5321 line length, bare CR or LF, NUL).
    Content(ContentFault),
    /// Connection-level refusals (421): the session ends after them.
    Closing {
        host: String,
        why: Closing,
    },
}

/// Why a connection is closed with 421.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closing {
    /// Blocked after repeated authentication failures.
    Blocked,
    /// Too many new connections from the client's address in the last minute.
    ConnectionRate,
    /// All sessions are taken.
    TooManySessions,
    /// The client's address has all the sessions it may have.
    TooManySessionsFromClient,
    /// The hard error limit of a session.
    TooManyErrors,
    /// No command within the timeout.
    Timeout,
    /// The gateway is shutting down.
    Shutdown,
}

impl Closing {
    /// The metric label and log reason.
    pub fn label(self) -> &'static str {
        match self {
            Closing::Blocked => "blocked",
            Closing::ConnectionRate => "connection_rate",
            Closing::TooManySessions => "too_many_sessions",
            Closing::TooManySessionsFromClient => "too_many_sessions_from_client",
            Closing::TooManyErrors => "too_many_errors",
            Closing::Timeout => "timeout",
            Closing::Shutdown => "shutdown",
        }
    }
}

impl Refusal {
    /// The reply that says it.
    pub fn reply(&self) -> Reply {
        use Refusal::*;
        let r = |code, e: (u8, u16, u16), text: Cow<'static, str>| {
            Reply::new(code, EnhancedCode(e.0, e.1, e.2), text)
        };
        match self {
            NeedEhlo => r(503, (5, 5, 1), "Error: send EHLO first".into()),
            NeedHeloOrEhlo => r(503, (5, 5, 1), "Error: send HELO/EHLO first".into()),
            NeedMail => r(503, (5, 5, 1), "Error: need MAIL command".into()),
            NeedRcpt => r(503, (5, 5, 1), "Error: need RCPT command".into()),
            NestedMail => r(503, (5, 5, 1), "Error: nested MAIL command".into()),
            TransactionInProgress => {
                r(503, (5, 5, 1), "Error: MAIL transaction in progress".into())
            }
            AlreadyAuthenticated => r(503, (5, 5, 1), "Error: already authenticated".into()),
            TlsAlreadyActive => r(503, (5, 5, 1), "Error: TLS already active".into()),
            DuringBdat(cmd) => r(
                503,
                (5, 5, 1),
                format!("Error: {cmd} not allowed during BDAT transfer").into(),
            ),
            NoValidRecipients => r(554, (5, 5, 1), "Error: no valid recipients".into()),
            TlsRequired => r(530, (5, 7, 0), "Must issue a STARTTLS command first".into()),
            AuthRequired => r(530, (5, 7, 0), "Authentication required".into()),
            AuthNotEnabled => r(503, (5, 5, 1), "Error: authentication not enabled".into()),
            UnknownMechanism => r(
                504,
                (5, 5, 4),
                "Error: unrecognized authentication type; use PLAIN or LOGIN".into(),
            ),
            AuthAborted => r(501, (5, 7, 0), "Authentication aborted".into()),
            SaslUndecodable => r(501, (5, 5, 2), "Error: cannot decode SASL response".into()),
            AuthFailed => r(535, (5, 7, 8), "Error: authentication failed".into()),
            AuthBusy => r(454, (4, 7, 0), "Temporary authentication failure".into()),
            SenderNotOwned { sender, user } => r(
                553,
                (5, 7, 1),
                format!("<{sender}>: Sender address rejected: not owned by user {user}").into(),
            ),
            RelayDenied { recipient } => r(
                554,
                (5, 7, 1),
                format!("<{recipient}>: Relay access denied").into(),
            ),
            Postmaster => r(
                550,
                (5, 1, 1),
                "<postmaster>: Recipient address rejected: this gateway has no local mailboxes"
                    .into(),
            ),
            SenderNeedsSmtputf8 => r(
                553,
                (5, 6, 7),
                "Sender address has non-ASCII characters; MAIL needs the SMTPUTF8 parameter".into(),
            ),
            RecipientNeedsSmtputf8 => r(
                553,
                (5, 6, 7),
                "Recipient address has non-ASCII characters; MAIL needs the SMTPUTF8 parameter"
                    .into(),
            ),
            LowSpace => r(
                452,
                (4, 3, 1),
                "Insufficient system storage; try again later".into(),
            ),
            MessageRate => r(
                450,
                (4, 7, 1),
                "Error: too much mail from your address; try again later".into(),
            ),
            TooManyRecipients { limit } => r(
                452,
                (4, 5, 3),
                format!("Error: too many recipients (limit {limit} per message)").into(),
            ),
            DeclaredSizeTooLarge { limit } => r(
                552,
                (5, 3, 4),
                format!("Message size exceeds fixed maximum message size ({limit} octets)").into(),
            ),
            MessageTooLarge { limit } => r(
                552,
                (5, 3, 4),
                format!("Error: message too large (limit {limit} octets)").into(),
            ),
            ExpnUnsupported => r(502, (5, 5, 1), "Error: EXPN is not supported".into()),
            TlsUnavailable => r(
                454,
                (4, 7, 0),
                "TLS not available due to local problem".into(),
            ),
            QueueWriteError => r(451, (4, 3, 0), "Error: queue file write error".into()),
            Content(fault) => {
                let (code, e, text) = match fault {
                    ContentFault::LineTooLong => (
                        500,
                        (5, 5, 2),
                        "a text line is longer than 1000 octets (RFC 5321 4.5.3.1.6)",
                    ),
                    ContentFault::BareLf => {
                        (550, (5, 5, 2), "bare <LF> in message data (RFC 5321 2.3.8)")
                    }
                    ContentFault::BareCr => {
                        (550, (5, 5, 2), "bare <CR> in message data (RFC 5321 2.3.8)")
                    }
                    ContentFault::Nul => (550, (5, 6, 0), "NUL octet in message data"),
                };
                r(code, e, format!("Error: message refused: {text}").into())
            }
            Closing { host, why } => {
                let (e, text) = match why {
                    self::Closing::Blocked => (
                        (4, 7, 0),
                        "Error: too many authentication failures; try again later",
                    ),
                    self::Closing::ConnectionRate => (
                        (4, 7, 0),
                        "Error: too many connections from your address per minute",
                    ),
                    self::Closing::TooManySessions => {
                        ((4, 7, 0), "Error: too many connections; try again later")
                    }
                    self::Closing::TooManySessionsFromClient => {
                        ((4, 7, 0), "Error: too many connections from your address")
                    }
                    self::Closing::TooManyErrors => ((4, 7, 0), "Error: too many errors"),
                    self::Closing::Timeout => ((4, 4, 2), "Error: timeout exceeded"),
                    self::Closing::Shutdown => {
                        ((4, 3, 2), "Service shutting down, try again later")
                    }
                };
                r(421, e, format!("{host} {text}").into())
            }
        }
    }

    /// The label a refusal is counted under in `postern_commands_refused_total`: its
    /// reply code (bounded, and what the dashboard groups by).
    pub fn metric_label(&self) -> String {
        self.reply().code.to_string()
    }
}

impl From<Refusal> for Reply {
    fn from(r: Refusal) -> Reply {
        r.reply()
    }
}
