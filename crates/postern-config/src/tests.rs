use super::*;

use std::time::Duration;

#[test]
fn defaults_validate_and_round_trip() {
    let c = GatewayConfig::default();
    c.validate().expect("defaults are valid");
    let text = c.to_toml().expect("renders");
    let back: GatewayConfig = toml::from_str(&text).expect("parses");
    assert_eq!(back, c);
}

#[test]
fn unknown_fields_are_errors() {
    let err = toml::from_str::<GatewayConfig>("hostnme = \"x\"").unwrap_err();
    assert!(err.to_string().contains("hostnme"), "{err}");
    let err = toml::from_str::<GatewayConfig>("[limits]\nmax_size = 1").unwrap_err();
    assert!(err.to_string().contains("max_size"), "{err}");
}

#[test]
fn partial_file_takes_defaults() {
    let c: GatewayConfig = toml::from_str(
        r#"
hostname = "mail.example.com"
[[listeners]]
kind = "submission"
address = "127.0.0.1:2587"
[relay]
trusted_networks = ["10.0.0.0/8"]
[timeouts]
command = "1m 30s"
"#,
    )
    .expect("parses");
    c.validate().expect("valid");
    assert_eq!(c.listeners.len(), 1);
    assert_eq!(c.timeouts.command, Duration::from_secs(90));
    assert_eq!(c.limits, LimitsConfig::default());
    assert!(c.relay.is_trusted("10.1.2.3".parse().unwrap()));
    assert!(c.relay.is_trusted("::ffff:10.1.2.3".parse().unwrap()));
    assert!(!c.relay.is_trusted("192.168.1.1".parse().unwrap()));
}

#[test]
fn default_trusts_nobody() {
    let c = GatewayConfig::default();
    assert!(!c.relay.is_trusted("127.0.0.1".parse().unwrap()));
}

#[test]
fn validation_catches_nonsense() {
    let mut c = GatewayConfig::default();
    c.listeners.push(c.listeners[0].clone());
    assert!(c.validate().is_err());
    let c = GatewayConfig {
        hostname: "bad host".into(),
        ..Default::default()
    };
    assert!(c.validate().is_err());
    let mut c = GatewayConfig::default();
    c.timeouts.command = Duration::ZERO;
    assert!(c.validate().is_err());
}

#[test]
fn validation_reports_every_problem_with_its_path() {
    let mut c = GatewayConfig::default();
    c.listeners.push(c.listeners[0].clone());
    c.delivery.retry.jitter = 1.5;
    c.limits.max_recipients = 0;
    let Err(ConfigError::Invalid(errors)) = c.validate() else {
        panic!("three mistakes, no error");
    };
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "listeners[3].address",
            "limits.max_recipients",
            "delivery.retry.jitter"
        ]
    );
    assert_eq!(
        errors[0].message,
        "0.0.0.0:25 is bound by listeners[0] already"
    );
    let shown = ConfigError::Invalid(errors).to_string();
    assert_eq!(
        shown,
        "invalid configuration:\n  \
         listeners[3].address: 0.0.0.0:25 is bound by listeners[0] already\n  \
         limits.max_recipients: must be at least 1\n  \
         delivery.retry.jitter: must be at least 0 and less than 1"
    );
}

#[test]
fn several_listeners_may_ask_for_port_zero() {
    let mut c = GatewayConfig::default();
    for l in &mut c.listeners {
        l.address = ([127, 0, 0, 1], 0).into();
    }
    assert!(c.validate().is_ok(), "{:?}", c.validate());
}

#[test]
fn each_check_names_its_setting() {
    type Spoil = fn(&mut GatewayConfig);
    let cases: [(&str, Spoil); 8] = [
        ("hostname", |c| c.hostname = "bad host".into()),
        ("listeners", |c| c.listeners.clear()),
        ("timeouts.command", |c| c.timeouts.command = Duration::ZERO),
        ("limits.max_sessions_per_ip", |c| {
            c.limits.max_sessions_per_ip = 0
        }),
        ("delivery.smarthost", |c| {
            c.delivery.mode = DeliveryMode::Smarthost
        }),
        ("delivery.retry.factor", |c| {
            c.delivery.retry.factor = f64::NAN
        }),
        ("delivery.retry.max", |c| {
            c.delivery.retry.max = Duration::from_secs(1)
        }),
        ("delivery.limits.max_connections_per_destination", |c| {
            c.delivery.limits.max_connections_per_destination = 0
        }),
    ];
    for (path, spoil) in cases {
        let mut c = GatewayConfig::default();
        spoil(&mut c);
        match c.validate() {
            Err(ConfigError::Invalid(errors)) => {
                assert_eq!(errors.len(), 1, "{path}: {errors:?}");
                assert_eq!(errors[0].path, path);
            }
            other => panic!("{path}: {other:?}"),
        }
    }
}
