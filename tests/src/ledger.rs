//! A submitting client for crash tests: sends messages with a unique token in the
//! subject and records, for every `250 … queued as ID`, which token it acknowledged.
//! Connection errors (the gateway was killed) are expected; the client reconnects.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::smtp::Smtp;

/// Queue ID → token, for every acknowledged message.
pub type Ledger = Arc<Mutex<HashMap<String, String>>>;

/// Sends messages to `to` until `stop`; returns how many it tried. Tokens are
/// `ledger-<client>-<n>`; every 17th body is large (over the spool's write chunk).
pub fn submit_until(
    client: usize,
    addr: SocketAddr,
    to: &str,
    stop: &AtomicBool,
    ledger: &Ledger,
) -> usize {
    let mut seq = 0usize;
    let mut attempts = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let Ok((mut s, greeting)) = Smtp::connect(addr) else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        if greeting.code != 220 || s.cmd("EHLO crash.test").map(|r| r.code).ok() != Some(250) {
            continue;
        }
        for _ in 0..20 {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            seq += 1;
            attempts += 1;
            let token = format!("ledger-{client}-{seq}");
            let filler = "x".repeat(70);
            let lines = if seq.is_multiple_of(17) {
                3000
            } else {
                20 + seq % 50
            };
            let envelope =
                format!("MAIL FROM:<c{client}@example.com>\r\nRCPT TO:<{to}>\r\nDATA\r\n");
            let mut body = format!("Subject: {token}\r\n\r\n");
            for i in 0..lines {
                body.push_str(&format!("{token} {i} {filler}\r\n"));
            }
            let outcome = (|| -> anyhow::Result<Option<String>> {
                s.send(envelope.as_bytes())?;
                for _ in 0..3 {
                    if s.reply()?.code >= 400 {
                        return Ok(None);
                    }
                }
                s.send(body.as_bytes())?;
                s.send(b".\r\n")?;
                let r = s.reply()?;
                Ok((r.code == 250).then(|| {
                    r.last_line()
                        .rsplit(' ')
                        .next()
                        .unwrap_or_default()
                        .to_owned()
                }))
            })();
            match outcome {
                Ok(Some(id)) => {
                    ledger.lock().unwrap().insert(id, token);
                }
                Ok(None) => {}
                Err(_) => break,
            }
        }
    }
    attempts
}
