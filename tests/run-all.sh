#!/usr/bin/env bash
# The whole test suite, from a clean clone on a fresh machine:
#   1. installs the real peers the tests talk to when missing (Debian packages, and the
#      Kubernetes test binaries built from the Go module proxy),
#   2. checks formatting and lints,
#   3. builds the binaries the black-box tests run,
#   4. runs every test (unit, property, black-box against real clients and servers),
#   5. builds the container image from the Dockerfile and runs the gateway from it.
# Heavy build output goes to a cache outside the clone, so repeated runs are fast;
# nothing depends on that cache being there.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/postern/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

tests/scripts/install-peers.sh
# kube-apiserver, etcd, kube-controller-manager, kubectl and helm, built from the Go
# module proxy into ~/.cache/postern (about 12 minutes on two cores the first time;
# instant afterwards).
tests/scripts/k8s-binaries.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo build (binaries for black-box tests)"
cargo build --workspace --bins --locked
echo "== cargo test"
cargo test --workspace --locked --no-fail-fast
# The Dockerfile, built without a daemon (buildah) from locally made bases, and the
# gateway run from the image (about 10 minutes: a release build inside the image).
echo "== container image"
tests/scripts/container-image.sh
