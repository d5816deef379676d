//! AUTH (RFC 4954) with PLAIN (RFC 4616) and LOGIN, only over TLS. Every failure
//! gets the same reply whatever was wrong; failures per client IP lead to delays and
//! then to 421 and a temporary block.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use postern_proto::{EnhancedCode, Reply};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Exit, Flow, Session};
use crate::auth::{User, Verdict};
use crate::login::Checked;
use crate::login::limiter::Busy;
use crate::policy::Refusal;
use crate::policy::refusal::Closing;

/// Longest SASL line (RFC 4954 §4).
const MAX_SASL_LINE: usize = 12_288;

/// A SASL exchange that did not produce credentials.
enum Abort {
    /// The client cancelled with `*`.
    Cancelled,
    /// The response was not base64 or not shaped as the mechanism needs.
    Malformed,
    /// The session must end.
    End(Exit),
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    pub(super) async fn auth(&mut self, mechanism: String, initial: Option<String>) -> Flow {
        if self.greeting.is_none() {
            return self.refuse(Refusal::NeedEhlo);
        }
        if self.tls.is_none() {
            return self.refuse(Refusal::TlsRequired);
        }
        if self.gw.logins.is_none() {
            return self.refuse(Refusal::AuthNotEnabled);
        }
        if self.user.is_some() {
            return self.refuse(Refusal::AlreadyAuthenticated);
        }
        if self.txn.is_some() {
            return self.refuse(Refusal::TransactionInProgress);
        }
        let exchange = match mechanism.as_str() {
            "PLAIN" => self.sasl_plain(initial).await,
            "LOGIN" => self.sasl_login(initial).await,
            _ => {
                return self.refuse(Refusal::UnknownMechanism);
            }
        };
        let (name, password) = match exchange {
            Ok(c) => c,
            Err(Abort::Cancelled) => {
                return self.refuse(Refusal::AuthAborted);
            }
            Err(Abort::Malformed) => {
                return self.refuse(Refusal::SaslUndecodable);
            }
            Err(Abort::End(e)) => return Flow::End(e),
        };
        // A block (from this client's other sessions) also ends sessions that were
        // open before it: no more passwords are checked for a blocked client.
        if self.gw.failures.is_blocked(self.peer) {
            tracing::info!(client = %self.peer, "AUTH refused: client is blocked");
            let mech = match mechanism.as_str() {
                "PLAIN" | "LOGIN" => mechanism.as_str(),
                _ => "other",
            };
            self.gw
                .metrics
                .auth_attempts
                .with_label_values(&[mech, "blocked"])
                .inc();
            return self.blocked();
        }
        let mech_label = match mechanism.as_str() {
            "PLAIN" => "PLAIN",
            "LOGIN" => "LOGIN",
            _ => "other",
        };
        let started = tokio::time::Instant::now();
        let gw = self.gw.clone();
        let logins = gw.logins.as_ref();
        // A login verified recently costs no hash and counts as no attempt.
        let cached = match (logins, &name) {
            (Some(l), Some(n)) => l.cached(n, &password),
            _ => None,
        };
        if let Some(user) = cached {
            return self.authenticated(user, mech_label, &mechanism);
        }
        // Anything else counts toward the brute-force limits before any hashing (a
        // success is forgiven), so a flood of attempts is refused without costing a
        // hash each.
        let verdict = gw.failures.record_attempt(self.peer);
        if verdict == Verdict::Block {
            gw.metrics
                .auth_attempts
                .with_label_values(&[mech_label, "blocked"])
                .inc();
            tracing::warn!(client = %self.peer, "client blocked after repeated authentication failures");
            return self.blocked();
        }
        let checked = match (logins, name) {
            (Some(l), Some(n)) => l.verify(self.peer, &n, &password).await,
            _ => Ok(Checked::Refused),
        };
        match checked {
            Ok(Checked::User(user)) => {
                gw.failures.forgive(self.peer);
                return self.authenticated(user, mech_label, &mechanism);
            }
            Ok(Checked::Refused) => {}
            Err(Busy) => {
                gw.failures.forgive(self.peer);
                tracing::warn!(client = %self.peer, "AUTH deferred: too many logins waiting for verification");
                gw.metrics
                    .auth_attempts
                    .with_label_values(&[mech_label, "busy"])
                    .inc();
                return self.refuse(Refusal::AuthBusy);
            }
        }
        tracing::info!(client = %self.peer, mechanism, "authentication failed");
        let blocked = gw.failures.failed(self.peer);
        gw.metrics
            .auth_attempts
            .with_label_values(&[mech_label, if blocked { "blocked" } else { "failure" }])
            .inc();
        if blocked {
            tracing::warn!(client = %self.peer, "client blocked after repeated authentication failures");
            return self.blocked();
        }
        // Every failure takes at least as long, whatever was wrong (an unknown user,
        // an argon2id or a bcrypt hash), so timing tells nothing; no slot is held.
        tokio::time::sleep_until(started + gw.config.auth.failure_reply_time).await;
        if let Verdict::Delay(d) = verdict {
            tokio::time::sleep(d).await;
        }
        self.refuse(Refusal::AuthFailed)
    }

    /// 235, and the session is the user's.
    fn authenticated(&mut self, user: Arc<User>, mech_label: &str, mechanism: &str) -> Flow {
        self.gw
            .metrics
            .auth_attempts
            .with_label_values(&[mech_label, "success"])
            .inc();
        tracing::info!(client = %self.peer, user = %user.name, mechanism, "authenticated");
        self.user = Some(user);
        self.ok(Reply::new(
            235,
            EnhancedCode(2, 7, 0),
            "Authentication successful",
        ))
    }

    /// 421 and close, for a client blocked after too many failures.
    fn blocked(&mut self) -> Flow {
        self.wire.reply(
            &Refusal::Closing {
                host: self.gw.config.hostname.clone(),
                why: Closing::Blocked,
            }
            .reply(),
        );
        Flow::End(Exit::Closed("blocked after authentication failures"))
    }

    /// Sends a 334 challenge and reads the client's base64 answer.
    async fn challenge(&mut self, prompt: &'static str) -> Result<Vec<u8>, Abort> {
        self.wire.reply(&Reply::plain(334, vec![prompt.into()]));
        let line = match self.read_line(MAX_SASL_LINE).await {
            Ok(Ok(line)) => line,
            Ok(Err(_)) => return Err(Abort::Malformed),
            Err(e) => return Err(Abort::End(e)),
        };
        decode(&line)
    }

    /// PLAIN: `authzid NUL authcid NUL password`. A different authzid (acting for
    /// someone else) is not supported and fails like a wrong password.
    async fn sasl_plain(
        &mut self,
        initial: Option<String>,
    ) -> Result<(Option<String>, String), Abort> {
        let raw = match initial {
            Some(i) => decode(i.as_bytes())?,
            None => self.challenge("").await?,
        };
        let mut parts = raw.split(|&b| b == 0);
        let (Some(authz), Some(authc), Some(pw), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Abort::Malformed);
        };
        let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| Abort::Malformed);
        let (authz, authc, pw) = (text(authz)?, text(authc)?, text(pw)?);
        let name = (authz.is_empty() || authz == authc).then_some(authc);
        Ok((name, pw))
    }

    /// LOGIN: user name and password in two challenges ("Username:", "Password:").
    async fn sasl_login(
        &mut self,
        initial: Option<String>,
    ) -> Result<(Option<String>, String), Abort> {
        let name = match initial {
            Some(i) => decode(i.as_bytes())?,
            None => self.challenge("VXNlcm5hbWU6").await?,
        };
        let pw = self.challenge("UGFzc3dvcmQ6").await?;
        let name = String::from_utf8(name).map_err(|_| Abort::Malformed)?;
        let pw = String::from_utf8(pw).map_err(|_| Abort::Malformed)?;
        Ok((Some(name), pw))
    }
}

fn decode(line: &[u8]) -> Result<Vec<u8>, Abort> {
    match line {
        b"*" => Err(Abort::Cancelled),
        b"=" => Ok(Vec::new()),
        _ => B64.decode(line).map_err(|_| Abort::Malformed),
    }
}
