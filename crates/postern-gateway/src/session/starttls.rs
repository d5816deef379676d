//! STARTTLS (RFC 3207). The plain stream goes back to the caller for the handshake;
//! whatever the client pipelined after STARTTLS is dropped with this session.

use postern_proto::{EnhancedCode, Reply};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Exit, Flow, Session};
use crate::policy::Refusal;

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    pub(super) async fn starttls(&mut self) -> Flow {
        if self.tls.is_some() {
            return self.refuse(Refusal::TlsAlreadyActive);
        }
        if self.gw.tls.is_none() {
            return self.refuse(Refusal::TlsUnavailable);
        }
        self.wire.reply(&Reply::new(
            220,
            EnhancedCode(2, 0, 0),
            "Ready to start TLS",
        ));
        if self.wire.flush().await.is_err() {
            return Flow::End(Exit::Closed("connection error"));
        }
        Flow::End(Exit::StartTls)
    }
}
