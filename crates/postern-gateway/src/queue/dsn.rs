//! Delivery status notifications (RFC 3464, RFC 6522 multipart/report): one message
//! to the envelope sender listing the recipients that failed, why, and the original
//! headers. Sent with the null sender, so a DSN can never cause another.

use std::fmt::Write as _;

/// One failed recipient.
pub struct FailedRecipient<'a> {
    pub address: &'a str,
    /// Enhanced status code, e.g. "5.1.1".
    pub status: String,
    /// The remote server's reply, or a local reason.
    pub diagnostic: &'a str,
    /// The remote server, when one answered.
    pub remote_mta: Option<&'a str>,
}

/// What the DSN is about.
pub struct Report<'a> {
    pub reporting_mta: &'a str,
    pub original_id: &'a str,
    pub original_sender: &'a str,
    /// Unix seconds the original arrived.
    pub arrival: u64,
    pub failed: Vec<FailedRecipient<'a>>,
    /// The original message's header section (up to the blank line).
    pub original_headers: &'a [u8],
    /// New Message-ID's unique part.
    pub unique: &'a str,
}

fn rfc2822(unix: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix as i64)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc2822)
                .ok()
        })
        .unwrap_or_default()
}

/// Renders the DSN (CRLF line endings), ready for the spool.
pub fn render(r: &Report<'_>) -> Vec<u8> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp().max(0) as u64;
    let boundary = format!("{}/{}", r.unique, r.reporting_mta);
    let mut m = String::new();
    let _ = write!(
        m,
        "From: Mail Delivery System <MAILER-DAEMON@{host}>\r\n\
         To: <{to}>\r\n\
         Subject: Undelivered Mail Returned to Sender\r\n\
         Date: {date}\r\n\
         Message-ID: <{unique}@{host}>\r\n\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\"\r\n\
         \r\n\
         This is a MIME-encapsulated message.\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Description: Notification\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n\
         This is the mail system at host {host}.\r\n\
         \r\n\
         Your message (queue ID {id}) could not be delivered to one or more\r\n\
         recipients. It is attached below.\r\n\
         \r\n",
        host = r.reporting_mta,
        to = r.original_sender,
        date = rfc2822(now),
        unique = r.unique,
        id = r.original_id,
    );
    for f in &r.failed {
        let _ = write!(m, "<{}>: {}\r\n", f.address, one_line(f.diagnostic));
    }
    let _ = write!(
        m,
        "\r\n--{boundary}\r\n\
         Content-Description: Delivery report\r\n\
         Content-Type: message/delivery-status\r\n\
         \r\n\
         Reporting-MTA: dns; {host}\r\n\
         X-Postern-Queue-ID: {id}\r\n\
         Arrival-Date: {arrival}\r\n",
        host = r.reporting_mta,
        id = r.original_id,
        arrival = rfc2822(r.arrival),
    );
    for f in &r.failed {
        let _ = write!(
            m,
            "\r\nFinal-Recipient: rfc822; {}\r\nAction: failed\r\nStatus: {}\r\n",
            f.address, f.status
        );
        if let Some(mta) = f.remote_mta {
            let _ = write!(
                m,
                "Remote-MTA: dns; {mta}\r\nDiagnostic-Code: smtp; {}\r\n",
                one_line(f.diagnostic)
            );
        } else {
            let _ = write!(
                m,
                "Diagnostic-Code: x-postern; {}\r\n",
                one_line(f.diagnostic)
            );
        }
    }
    let _ = write!(
        m,
        "\r\n--{boundary}\r\n\
         Content-Description: Undelivered Message Headers\r\n\
         Content-Type: text/rfc822-headers\r\n\
         \r\n"
    );
    let mut out = m.into_bytes();
    out.extend_from_slice(r.original_headers);
    if !r.original_headers.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

/// Diagnostic text on one line, printable, bounded.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(900)
        .collect()
}

/// The header section of a message: everything up to and including the first empty
/// line (or all of `content` when there is none), bounded in size.
pub fn header_section(content: &[u8]) -> &[u8] {
    let limit = content.len().min(64 * 1024);
    match content[..limit].windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => &content[..i + 2],
        None => &content[..limit],
    }
}

/// A DSN to write: the original's envelope and size (its headers are read from the
/// spool) and each failed recipient with the reason.
pub struct Notice {
    pub reporting_mta: String,
    pub original: crate::spool::SpooledMessage,
    /// (recipient address, reason, the remote server that answered)
    pub failed: Vec<(String, crate::outbound::outcome::Reason, Option<String>)>,
}

impl Notice {
    /// Writes the DSN to the spool (durable when this returns `Some`), addressed to
    /// the original sender with the null sender.
    pub async fn queue(&self, spool: &crate::spool::Spool) -> Option<crate::spool::SpooledMessage> {
        use tokio::io::AsyncReadExt;
        let env = &self.original.envelope;
        let mut head = Vec::new();
        if let Ok(mut f) = spool
            .open_body(&env.id, self.original.size.min(64 * 1024))
            .await
        {
            let _ = f.read_to_end(&mut head).await;
        }
        let mut writer = spool.create();
        let unique = writer.id().to_owned();
        let body = render(&Report {
            reporting_mta: &self.reporting_mta,
            original_id: &env.id,
            original_sender: &env.sender,
            arrival: env.received_at,
            failed: self
                .failed
                .iter()
                .map(|(address, reason, remote)| FailedRecipient {
                    address,
                    status: reason.status.to_string(),
                    diagnostic: &reason.detail,
                    remote_mta: remote.as_deref(),
                })
                .collect(),
            original_headers: header_section(&head),
            unique: &unique,
        });
        if let Err(e) = writer.write(&body).await {
            tracing::error!(id = %env.id, error = %e, "cannot write DSN");
            writer.abort().await;
            return None;
        }
        let dsn_env = crate::spool::Envelope {
            id: unique.clone(),
            sender: String::new(),
            recipients: vec![env.sender.clone()],
            received_at: super::retry::now_unix(),
            received_at_ms: super::retry::now_ms(),
            client_ip: String::new(),
            helo: self.reporting_mta.clone(),
            auth_user: None,
            listener: "dsn".into(),
            smtputf8: !env.sender.is_ascii(),
            eight_bit: false,
        };
        match writer.commit(&dsn_env).await {
            Ok(msg) => {
                tracing::info!(id = %env.id, dsn_id = %unique, to = %format!("<{}>", env.sender), "sender non-delivery notification");
                Some(msg)
            }
            Err(e) => {
                tracing::error!(id = %env.id, error = %e, "cannot queue DSN");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_shape() {
        let headers = b"Received: x\r\nSubject: hello\r\n";
        let dsn = render(&Report {
            reporting_mta: "gw.test",
            original_id: "ABC",
            original_sender: "app@example.com",
            arrival: 1_700_000_000,
            failed: vec![FailedRecipient {
                address: "nobody@example.net",
                status: "5.1.1".into(),
                diagnostic: "550 5.1.1 <nobody@example.net>: User unknown",
                remote_mta: Some("mx.example.net"),
            }],
            original_headers: headers,
            unique: "U1",
        });
        let text = String::from_utf8(dsn).unwrap();
        assert!(text.contains("Content-Type: multipart/report; report-type=delivery-status;"));
        assert!(text.contains("Final-Recipient: rfc822; nobody@example.net\r\nAction: failed\r\nStatus: 5.1.1\r\nRemote-MTA: dns; mx.example.net\r\nDiagnostic-Code: smtp; 550 5.1.1"));
        assert!(text.contains(
            "Content-Type: text/rfc822-headers\r\n\r\nReceived: x\r\nSubject: hello\r\n"
        ));
        assert!(text.ends_with("--U1/gw.test--\r\n"));
        // Only CRLF line endings.
        for (i, b) in text.bytes().enumerate() {
            if b == b'\n' {
                assert_eq!(text.as_bytes()[i - 1], b'\r');
            }
        }
    }

    #[test]
    fn header_section_stops_at_blank_line() {
        assert_eq!(
            header_section(b"A: 1\r\nB: 2\r\n\r\nbody"),
            b"A: 1\r\nB: 2\r\n"
        );
        assert_eq!(header_section(b"A: 1\r\n"), b"A: 1\r\n");
    }
}
