//! Writes the MailRelay CRD to crds/ and charts/postern/crds/ (byte-identical), or
//! with `--check` fails when either is stale. Run from the workspace root.

use std::process::ExitCode;

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
    let mut stale = false;
    for path in TARGETS {
        let current = std::fs::read_to_string(path).unwrap_or_default();
        if current == yaml {
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
        if let Err(e) = std::fs::write(path, &yaml) {
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
