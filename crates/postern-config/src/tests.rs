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
