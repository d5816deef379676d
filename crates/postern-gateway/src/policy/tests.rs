use std::net::IpAddr;

use postern_config::{ListenerKind, RelayConfig};

use super::admission::{Arrival, admit};
use super::refusal::Closing;
use super::relay::may_relay;
use super::sender::{may_send_as, may_start_transaction};
use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn admission_refuses_in_order() {
    let all = Arrival {
        blocked: true,
        within_rate: false,
        session_free: false,
        client_session_free: false,
    };
    assert_eq!(admit(all), Err(Closing::Blocked));
    let a = Arrival {
        blocked: false,
        ..all
    };
    assert_eq!(admit(a), Err(Closing::ConnectionRate));
    let a = Arrival {
        within_rate: true,
        ..a
    };
    assert_eq!(admit(a), Err(Closing::TooManySessions));
    let a = Arrival {
        session_free: true,
        ..a
    };
    assert_eq!(admit(a), Err(Closing::TooManySessionsFromClient));
    let a = Arrival {
        client_session_free: true,
        ..a
    };
    assert_eq!(admit(a), Ok(()));
}

#[test]
fn never_an_open_relay() {
    let mut relay = RelayConfig::default();
    // Default: nobody is trusted, not even loopback.
    for kind in [
        ListenerKind::Relay,
        ListenerKind::Submission,
        ListenerKind::Submissions,
    ] {
        assert!(may_relay(kind, false, ip("127.0.0.1"), &relay, "x@y.test").is_err());
        assert!(may_relay(kind, true, ip("127.0.0.1"), &relay, "x@y.test").is_ok());
    }
    relay.trusted_networks = vec!["10.0.0.0/8".parse().unwrap()];
    assert!(
        may_relay(
            ListenerKind::Relay,
            false,
            ip("10.1.2.3"),
            &relay,
            "x@y.test"
        )
        .is_ok()
    );
    // A trusted network does not open the submission ports.
    assert!(
        may_relay(
            ListenerKind::Submission,
            false,
            ip("10.1.2.3"),
            &relay,
            "x@y.test"
        )
        .is_err()
    );
    let refusal = may_relay(
        ListenerKind::Relay,
        false,
        ip("192.0.2.1"),
        &relay,
        "x@y.test",
    )
    .unwrap_err();
    assert_eq!(
        refusal.reply().to_wire(),
        "554 5.7.1 <x@y.test>: Relay access denied\r\n"
    );
}

#[test]
fn submission_needs_tls_then_auth() {
    use ListenerKind::*;
    assert_eq!(
        may_start_transaction(Submission, false, false),
        Err(Refusal::TlsRequired)
    );
    assert_eq!(
        may_start_transaction(Submission, true, false),
        Err(Refusal::AuthRequired)
    );
    assert_eq!(may_start_transaction(Submissions, true, true), Ok(()));
    assert_eq!(may_start_transaction(Relay, false, false), Ok(()));
    // Without a user (relay from a trusted network) any sender goes.
    assert_eq!(may_send_as(None, &postern_proto::ReversePath::Null), Ok(()));
}

#[test]
fn refusals_carry_enhanced_codes() {
    let all = [
        Refusal::NeedEhlo,
        Refusal::NeedMail,
        Refusal::TlsRequired,
        Refusal::AuthFailed,
        Refusal::LowSpace,
        Refusal::TooManyRecipients { limit: 100 },
        Refusal::MessageTooLarge { limit: 10 },
        Refusal::Closing {
            host: "gw".into(),
            why: Closing::Shutdown,
        },
    ];
    for r in all {
        let reply = r.reply();
        let e = reply.enhanced.expect("every refusal has an enhanced code");
        assert_eq!(u16::from(e.0), reply.code / 100, "{reply}");
        assert!(!reply.is_completion(), "{reply}");
        assert_eq!(r.metric_label(), reply.code.to_string());
    }
    assert_eq!(
        Refusal::Closing {
            host: "gw".into(),
            why: Closing::Timeout
        }
        .reply()
        .to_wire(),
        "421 4.4.2 gw Error: timeout exceeded\r\n"
    );
}
