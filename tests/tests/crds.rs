//! The committed CRDs are what the Rust types generate, in both places (crds/ and the
//! chart), byte for byte.

#[test]
fn committed_crds_are_current_and_identical() {
    let yaml = postern_api::crd_yaml().unwrap();
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    for path in [
        "crds/mailrelays.postern.dev.yaml",
        "charts/postern/crds/mailrelays.postern.dev.yaml",
    ] {
        let committed = std::fs::read_to_string(format!("{root}/{path}")).unwrap_or_default();
        assert!(
            committed == yaml,
            "{path} is stale: run `cargo run -p postern-api --bin crdgen` from the workspace root"
        );
    }
    let reference =
        std::fs::read_to_string(format!("{root}/docs/crd-reference.md")).unwrap_or_default();
    assert!(
        reference == postern_api::reference::markdown(),
        "docs/crd-reference.md is stale: run `cargo run -p postern-api --bin crdgen` from the workspace root"
    );
}
