//! DATA (RFC 5321 §4.1.1.4) and what DATA and BDAT share: starting the spool file,
//! feeding checked content into it, and ending the message with a precise verdict.
//! The body streams through bounded buffers; nothing is accepted until it is durable.

use postern_proto::{ContentChecker, ContentFault, DotReceiver, EnhancedCode, Reply};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Content, Flow, Session};
use crate::policy::Refusal;
use crate::received::{ReceivedFields, received_header};
use crate::spool::Envelope;

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    pub(super) async fn data(&mut self) -> Flow {
        match &self.txn {
            None => {
                return self.refuse(Refusal::NeedRcpt);
            }
            Some(t) if t.content.is_some() => {
                return self.refuse(Refusal::DuringBdat("DATA"));
            }
            Some(t) if t.rcpts.is_empty() => {
                return self.refuse(Refusal::NoValidRecipients);
            }
            Some(_) => {}
        }
        self.begin_content().await;
        self.wire.reply(&Reply::plain(
            354,
            vec!["End data with <CR><LF>.<CR><LF>".into()],
        ));
        let max = self.gw.config.limits.max_message_size;
        let mut receiver = DotReceiver::new();
        let mut unstuffed = Vec::new();
        loop {
            if !self.wire.buffered().is_empty() {
                unstuffed.clear();
                let progress = receiver.ingest(self.wire.buffered(), &mut unstuffed);
                self.wire.consume(progress.consumed);
                if let Some(c) = self.txn.as_mut().and_then(|t| t.content.as_mut()) {
                    feed(c, max, &unstuffed).await;
                }
                if progress.done {
                    break;
                }
            }
            let timeout = self.gw.config.timeouts.data;
            if let Err(e) = self.wire.fill(timeout, None).await {
                tracing::info!(client = %self.peer, "connection ended during DATA; message dropped");
                return super::Flow::End(self.read_failed(e));
            }
        }
        let reply = self.finish_message().await;
        if reply.is_completion() {
            self.ok(reply)
        } else {
            self.refuse(reply)
        }
    }

    /// Opens the spool file for the open transaction and writes the Received header.
    pub(super) async fn begin_content(&mut self) {
        let Some(txn) = &self.txn else { return };
        let mut writer = self.gw.spool.create();
        let cfg = &self.gw.config;
        let greeting = self.greeting.as_ref();
        let header = received_header(&ReceivedFields {
            helo: greeting.map(|g| g.name.as_str()).unwrap_or("unknown"),
            client_ip: self.peer,
            hostname: &cfg.hostname,
            esmtp: greeting.is_some_and(|g| g.esmtp),
            smtputf8: txn.params.smtputf8,
            tls: self
                .tls
                .as_ref()
                .map(|t| (t.version.as_str(), t.cipher.as_str())),
            authenticated: self.user.is_some(),
            show_user: self
                .user
                .as_ref()
                .filter(|_| cfg.auth.received_header_shows_user)
                .map(|u| u.name.as_str()),
            id: writer.id(),
            single_rcpt: match txn.rcpts.as_slice() {
                [one] => Some(one.as_str()),
                _ => None,
            },
        });
        let spool_failed = writer.write(header.as_bytes()).await.is_err();
        let checker = ContentChecker::new(self.line_endings());
        if let Some(txn) = &mut self.txn {
            txn.content = Some(Content {
                writer,
                checker,
                scratch: Vec::new(),
                oversize: false,
                spool_failed,
            });
        }
    }

    /// Ends the message: checks, then commits to the spool or drops it. The
    /// transaction is over either way.
    pub(super) async fn finish_message(&mut self) -> Reply {
        let no_txn = || Refusal::NeedMail.reply();
        let Some(mut txn) = self.txn.take() else {
            return no_txn();
        };
        let Some(mut c) = txn.content.take() else {
            return no_txn();
        };
        let max = self.gw.config.limits.max_message_size;
        c.scratch.clear();
        let mut tail = std::mem::take(&mut c.scratch);
        c.checker.finish(&mut tail);
        write_checked(&mut c, max, &tail).await;
        let refusal = if c.oversize {
            Some(Refusal::MessageTooLarge { limit: max }.reply())
        } else if let Some(fault) = c.checker.fault() {
            Some(fault_reply(fault))
        } else if c.spool_failed {
            Some(Refusal::QueueWriteError.reply())
        } else {
            None
        };
        if let Some(r) = refusal {
            let reason = if c.oversize {
                "size"
            } else {
                match c.checker.fault() {
                    Some(ContentFault::LineTooLong) => "line_length",
                    Some(ContentFault::BareLf | ContentFault::BareCr) => "bare_line_ending",
                    Some(ContentFault::Nul) => "nul",
                    None => "spool",
                }
            };
            self.gw
                .metrics
                .messages_refused
                .with_label_values(&[reason])
                .inc();
            tracing::info!(client = %self.peer, reply = %r, "message refused");
            c.writer.abort().await;
            return r;
        }
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let envelope = Envelope {
            id: c.writer.id().to_owned(),
            sender: txn.from.to_string(),
            recipients: txn.rcpts,
            received_at: now_ms / 1000,
            received_at_ms: now_ms,
            client_ip: self.peer.to_string(),
            helo: self
                .greeting
                .as_ref()
                .map(|g| g.name.clone())
                .unwrap_or_default(),
            auth_user: self.user.as_ref().map(|u| u.name.clone()),
            listener: self.kind.as_str().to_owned(),
            smtputf8: txn.params.smtputf8,
            eight_bit: c.checker.eight_bit()
                || txn.params.body == Some(postern_proto::BodyType::EightBitMime),
        };
        match c.writer.commit(&envelope).await {
            Ok(msg) => {
                self.accepted += 1;
                let listener = [self.kind.as_str()];
                self.gw
                    .metrics
                    .messages_received
                    .with_label_values(&listener)
                    .inc();
                self.gw
                    .metrics
                    .received_bytes
                    .with_label_values(&listener)
                    .inc_by(msg.size);
                tracing::info!(
                    id = %envelope.id,
                    from = %format!("<{}>", envelope.sender),
                    nrcpt = envelope.recipients.len(),
                    size = msg.size,
                    client = %self.peer,
                    user = envelope.auth_user.as_deref().unwrap_or(""),
                    "message accepted"
                );
                self.gw.queue.add(msg);
                Reply::new(
                    250,
                    EnhancedCode(2, 0, 0),
                    format!("Ok: queued as {}", envelope.id),
                )
            }
            Err(e) => {
                self.gw
                    .metrics
                    .messages_refused
                    .with_label_values(&["spool"])
                    .inc();
                tracing::error!(error = %e, "spool commit failed");
                Refusal::QueueWriteError.reply()
            }
        }
    }
}

/// Checks raw content and writes what passes, until the message is known to fail.
pub(super) async fn feed(c: &mut Content, max: u64, data: &[u8]) {
    let mut out = std::mem::take(&mut c.scratch);
    out.clear();
    c.checker.ingest(data, &mut out);
    write_checked(c, max, &out).await;
    c.scratch = out;
}

async fn write_checked(c: &mut Content, max: u64, checked: &[u8]) {
    if c.checker.written() > max {
        c.oversize = true;
    }
    // Once the message cannot be accepted, the rest is read and dropped.
    if c.oversize || c.spool_failed || c.checker.fault().is_some() || checked.is_empty() {
        return;
    }
    if let Err(e) = c.writer.write(checked).await {
        tracing::error!(error = %e, "spool write failed");
        c.spool_failed = true;
    }
}

fn fault_reply(fault: ContentFault) -> Reply {
    Refusal::Content(fault).reply()
}
