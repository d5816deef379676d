//! The Received header added to every accepted message (RFC 5321 §4.4, with the
//! protocol names of RFC 3848 and RFC 6531). It names the client's HELO and IP, the
//! TLS parameters and the queue ID, so a message can be followed through the logs.
//! The authenticated user is named only when configured; nothing secret is written.

use std::net::IpAddr;

/// What the header says.
pub struct ReceivedFields<'a> {
    pub helo: &'a str,
    pub client_ip: IpAddr,
    pub hostname: &'a str,
    pub esmtp: bool,
    pub smtputf8: bool,
    pub tls: Option<(&'a str, &'a str)>,
    pub authenticated: bool,
    pub show_user: Option<&'a str>,
    pub id: &'a str,
    pub single_rcpt: Option<&'a str>,
}

/// Renders the header with CRLF line endings, folded.
pub fn received_header(f: &ReceivedFields<'_>) -> String {
    let proto = match (f.smtputf8, f.esmtp) {
        (true, _) => "UTF8SMTP",
        (false, true) => "ESMTP",
        (false, false) => "SMTP",
    };
    let suffix = match (f.tls.is_some(), f.authenticated) {
        (true, true) => "SA",
        (true, false) => "S",
        (false, true) => "A",
        (false, false) => "",
    };
    let mut h = format!(
        "Received: from {} ([{}])\r\n\tby {} (Postern) with {proto}{suffix} id {}",
        clean(f.helo),
        f.client_ip,
        f.hostname,
        f.id
    );
    if let Some((version, cipher)) = f.tls {
        h.push_str(&format!("\r\n\t(using {version} with cipher {cipher})"));
    }
    if let Some(user) = f.show_user {
        h.push_str(&format!("\r\n\t(authenticated sender: {})", clean(user)));
    }
    if let Some(rcpt) = f.single_rcpt {
        h.push_str(&format!("\r\n\tfor <{}>", clean(rcpt)));
    }
    let date = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc2822)
        .unwrap_or_default();
    h.push_str(&format!(";\r\n\t{date}\r\n"));
    h
}

/// Client-chosen text is reduced to characters that cannot break the header.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() || matches!(c, '(' | ')' | ';' | '<' | '>' | '\\') {
                '_'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_shape() {
        let h = received_header(&ReceivedFields {
            helo: "client.example",
            client_ip: "192.0.2.7".parse().unwrap(),
            hostname: "mx.example",
            esmtp: true,
            smtputf8: false,
            tls: Some(("TLSv1.3", "TLS13_AES_256_GCM_SHA384")),
            authenticated: true,
            show_user: None,
            id: "ABC",
            single_rcpt: Some("x@example.net"),
        });
        assert!(h.starts_with("Received: from client.example ([192.0.2.7])\r\n\tby mx.example (Postern) with ESMTPSA id ABC\r\n\t(using TLSv1.3"), "{h}");
        assert!(h.contains("for <x@example.net>;\r\n\t"), "{h}");
        assert!(h.ends_with("+0000\r\n"), "{h}");
        assert!(!h.contains("authenticated sender"));
    }

    #[test]
    fn client_text_cannot_inject() {
        let h = received_header(&ReceivedFields {
            helo: "evil)\r\nBcc: x",
            client_ip: "192.0.2.7".parse().unwrap(),
            hostname: "mx.example",
            esmtp: false,
            smtputf8: false,
            tls: None,
            authenticated: false,
            show_user: None,
            id: "ABC",
            single_rcpt: None,
        });
        assert!(!h.contains("\r\nBcc"), "{h}");
        assert!(h.contains("with SMTP id"), "{h}");
    }
}
