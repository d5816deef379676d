//! Keeps docs true to the code: the defaults block in docs/configuration.md is what
//! the gateway prints for an empty configuration.

use std::process::Command;

use postern_tests::gateway::gateway_bin;

#[test]
fn configuration_reference_shows_the_real_defaults() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/configuration.md"
    ))
    .unwrap();
    let block = doc
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("a toml block in docs/configuration.md");
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.toml");
    std::fs::write(&empty, "").unwrap();
    let out = Command::new(gateway_bin())
        .args(["check-config", "--config"])
        .arg(&empty)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        block.trim(),
        String::from_utf8(out.stdout).unwrap().trim(),
        "docs/configuration.md defaults are stale"
    );
}

#[test]
fn check_config_reports_typos_precisely() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[limits]\nmax_message_sise = 10\n").unwrap();
    let out = Command::new(gateway_bin())
        .args(["check-config", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("max_message_sise"), "{err}");
}
