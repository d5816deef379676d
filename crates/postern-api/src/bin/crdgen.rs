//! Writes the MailRelay CRD to crds/ and charts/postern/crds/ (byte-identical) and the
//! CRD reference to docs/crd-reference.md, or with `--check` fails when any is stale.
//! Run from the workspace root.

use std::process::ExitCode;

const REFERENCE: &str = "docs/crd-reference.md";

const TARGETS: [&str; 2] = [
    "crds/mailrelays.postern.dev.yaml",
    "charts/postern/crds/mailrelays.postern.dev.yaml",
];

fn main() -> ExitCode {
    let check = std::env::args().any(|a| a == "--check");
    let yaml = match postern_api::crd_yaml() {
        Ok(y) => y,
        Err(e) => {
            eprintln!("crdgen: cannot render the CRD: {e}");
            return ExitCode::FAILURE;
        }
    };
    let reference = postern_api::reference::markdown();
    let mut stale = false;
    let outputs = TARGETS
        .iter()
        .map(|p| (*p, &yaml))
        .chain([(REFERENCE, &reference)]);
    for (path, content) in outputs {
        let current = std::fs::read_to_string(path).unwrap_or_default();
        if current == *content {
            continue;
        }
        if check {
            eprintln!("crdgen: {path} is stale; run `cargo run -p postern-api --bin crdgen`");
            stale = true;
            continue;
        }
        if let Some(dir) = std::path::Path::new(path).parent()
            && let Err(e) = std::fs::create_dir_all(dir)
        {
            eprintln!("crdgen: cannot create {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
        if let Err(e) = std::fs::write(path, content) {
            eprintln!("crdgen: cannot write {path}: {e}");
            return ExitCode::FAILURE;
        }
        println!("crdgen: wrote {path}");
    }
    if stale {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
