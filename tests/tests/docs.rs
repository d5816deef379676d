//! Keeps docs true to the code: the defaults block in docs/configuration.md is what
//! the gateway prints for an empty configuration.

use std::process::{Command, Output};

use postern_tests::gateway::gateway_bin;
use postern_tests::repo_text;

/// `postern-gateway check-config` of a configuration file holding `toml`.
fn check_config(toml: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, toml).unwrap();
    Command::new(gateway_bin())
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap()
}

#[test]
fn configuration_reference_shows_the_real_defaults() {
    let doc = repo_text("docs/configuration.md");
    let block = doc
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("a toml block in docs/configuration.md");
    let out = check_config("");
    assert!(out.status.success());
    assert_eq!(
        block.trim(),
        String::from_utf8(out.stdout).unwrap().trim(),
        "docs/configuration.md defaults are stale"
    );
}

#[test]
fn check_config_reports_typos_precisely() {
    let out = check_config("[limits]\nmax_message_sise = 10\n");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("max_message_sise"), "{err}");
}
