use super::*;
use postern_proto::EnhancedCode;

/// A scripted server: reads client lines, answers from a list.
async fn scripted(
    server: tokio::io::DuplexStream,
    script: Vec<(&'static str, &'static str)>,
) -> Vec<u8> {
    let mut server = server;
    let mut seen = Vec::new();
    server.write_all(b"220 mx.test ESMTP\r\n").await.unwrap();
    for (expect_prefix, answer) in script {
        // Read until the expected text has arrived.
        while !String::from_utf8_lossy(&seen).contains(expect_prefix) {
            let mut b = [0u8; 4096];
            let n = server.read(&mut b).await.unwrap();
            if n == 0 {
                return seen;
            }
            seen.extend_from_slice(&b[..n]);
        }
        server.write_all(answer.as_bytes()).await.unwrap();
    }
    let mut rest = Vec::new();
    let _ = server.read_to_end(&mut rest).await;
    seen.extend_from_slice(&rest);
    seen
}

#[tokio::test]
async fn pipelined_transaction_with_per_recipient_results() {
    let (c, s) = tokio::io::duplex(1 << 16);
    let server = tokio::spawn(scripted(
        s,
        vec![
            (
                "EHLO",
                "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 1000000\r\n250 8BITMIME\r\n",
            ),
            (
                "DATA\r\n",
                "250 2.1.0 ok\r\n550 5.1.1 no such user\r\n250 2.1.5 ok\r\n354 go\r\n",
            ),
            ("\r\n.\r\n", "250 2.0.0 queued\r\n"),
            ("QUIT", "221 bye\r\n"),
        ],
    ));
    let mut client = SmtpClient::new(c, ClientTimeouts::default());
    client.greeting().await.unwrap();
    client.ehlo("gw.test").await.unwrap();
    assert!(client.caps.pipelining && client.caps.eight_bit_mime);
    assert_eq!(client.caps.size, Some(1_000_000));
    let body = b"Subject: x\r\n\r\n.leading dot\r\n".to_vec();
    let rcpts = vec!["a@x.test".to_owned(), "b@x.test".to_owned()];
    let msg = Outgoing {
        sender: "s@y.test",
        recipients: &rcpts,
        size: body.len() as u64,
        eight_bit: true,
        smtputf8: false,
    };
    let result = client.send(&msg, &mut &body[..]).await.unwrap();
    client.quit().await;
    assert_eq!(result.verdict(0).code, 550);
    assert_eq!(result.verdict(0).enhanced, Some(EnhancedCode(5, 1, 1)));
    assert_eq!(result.verdict(1).code, 250);
    let wire = String::from_utf8(server.await.unwrap()).unwrap();
    assert!(wire.contains("MAIL FROM:<s@y.test> SIZE=28 BODY=8BITMIME\r\nRCPT TO:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\n"), "{wire}");
    assert!(wire.contains("\r\n..leading dot\r\n.\r\n"), "{wire}");
}

#[tokio::test]
async fn without_pipelining_and_all_refused() {
    let (c, s) = tokio::io::duplex(1 << 16);
    let server = tokio::spawn(scripted(
        s,
        vec![
            ("EHLO", "250 mx.test\r\n"),
            ("MAIL", "250 ok\r\n"),
            ("RCPT", "450 4.2.1 try later\r\n"),
        ],
    ));
    let mut client = SmtpClient::new(c, ClientTimeouts::default());
    client.greeting().await.unwrap();
    client.ehlo("gw.test").await.unwrap();
    let rcpts = vec!["a@x.test".to_owned()];
    let msg = Outgoing {
        sender: "",
        recipients: &rcpts,
        size: 0,
        eight_bit: false,
        smtputf8: false,
    };
    let result = client.send(&msg, &mut &b""[..]).await.unwrap();
    assert!(result.data.is_none());
    assert!(result.verdict(0).is_transient());
    drop(client);
    let wire = String::from_utf8(server.await.unwrap()).unwrap();
    assert!(wire.contains("MAIL FROM:<>\r\n"), "{wire}");
    assert!(!wire.contains("DATA"), "{wire}");
}

#[tokio::test]
async fn malformed_and_missing_replies_are_errors() {
    let (c, mut s) = tokio::io::duplex(1024);
    tokio::spawn(async move {
        s.write_all(b"hello there\r\n").await.unwrap();
    });
    let mut client = SmtpClient::new(c, ClientTimeouts::default());
    assert!(matches!(
        client.greeting().await,
        Err(ClientError::Protocol { .. })
    ));
    let (c, s) = tokio::io::duplex(1024);
    drop(s);
    let mut client = SmtpClient::new(c, ClientTimeouts::default());
    assert!(matches!(
        client.greeting().await,
        Err(ClientError::Closed {
            phase: Phase::Greeting
        })
    ));
}
