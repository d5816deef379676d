#!/usr/bin/env bash
# Builds the container image from the top-level Dockerfile without a daemon or a
# registry, then runs the gateway from it once.
#
#   * buildah (Debian) with the vfs storage driver and chroot isolation: no daemon, no
#     overlay, no user namespaces needed.
#   * The base images come from debootstrap, not from a registry:
#       runtime: minimal Debian bookworm                      -> RUNTIME_IMAGE
#       build:   that + gcc/libc6-dev + the host's Rust toolchain (rustup's, under
#                ~/.rustup; Debian's rustc is too old for edition 2024) -> RUST_IMAGE
#     and are passed to `buildah bud` through the Dockerfile's build arguments.
#   * Then `postern-gateway --version` and `postern-gateway check-config` on an empty
#     file run from the built image.
#
# Needs root, the Debian mirror the host's apt uses (read from its sources) and the
# crate registry (the build stage runs `cargo build --release --locked`).
# Bases are cached under $POSTERN_IMAGE_WORK (default ~/.cache/postern/image) and in
# buildah's store; POSTERN_IMAGE_REBUILD_BASES=1 makes them again.
set -euo pipefail

repo="$(cd "$(dirname "$0")/../.." && pwd)"
work="${POSTERN_IMAGE_WORK:-$HOME/.cache/postern/image}"
suite="${POSTERN_IMAGE_SUITE:-bookworm}"
# The Debian mirror the host's apt is configured with (one-line or deb822 sources).
host_mirror() {
  {
    grep -hE '^[[:space:]]*deb[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
      | awk '{for (i = 2; i <= NF; i++) if ($i ~ /^https?:\/\//) { print $i; break }}'
    grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}'
  } | grep -v -- '-security' | head -n 1
}
mirror="${POSTERN_IMAGE_MIRROR:-$(host_mirror)}"
if [ -z "$mirror" ]; then
  echo "container-image: no Debian mirror in the host's apt sources; set POSTERN_IMAGE_MIRROR" >&2
  exit 1
fi
runtime_image="localhost/postern-runtime-base:$suite"
rust_image="localhost/postern-rust-base:$suite"
image="localhost/postern:ci"
export BUILDAH_ISOLATION=chroot
B=(buildah --storage-driver vfs)
start=$SECONDS
mkdir -p "$work"

log() { echo "container-image: $* (+$((SECONDS - start))s)"; }

need=()
command -v buildah >/dev/null 2>&1 || need+=(buildah)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# The host's Rust toolchain: the one `rustc` resolves to in this repository.
sysroot="$(cd "$repo" && rustc --print sysroot)"
rust_version="$(cd "$repo" && rustc --version)"
[ -x "$sysroot/bin/cargo" ] || { echo "container-image: no cargo in $sysroot" >&2; exit 1; }

containers=()
cleanup() {
  for c in "${containers[@]}"; do
    "${B[@]}" umount "$c" >/dev/null 2>&1 || true
    "${B[@]}" rm "$c" >/dev/null 2>&1 || true
  done
}
trap cleanup EXIT
new_container() { # prints the name; the caller records it
  "${B[@]}" from --pull=never "$1"
}
have_image() { "${B[@]}" inspect --type image "$1" >/dev/null 2>&1; }

if [ "${POSTERN_IMAGE_REBUILD_BASES:-0}" = 1 ]; then
  "${B[@]}" rmi -f "$image" "$rust_image" "$runtime_image" >/dev/null 2>&1 || true
  rm -rf "$work/rootfs-$suite"
fi

# 1. Runtime base: debootstrap minbase, imported as an image.
if ! have_image "$runtime_image"; then
  rootfs="$work/rootfs-$suite"
  if [ ! -e "$rootfs/.postern-complete" ]; then
    log "debootstrap --variant=minbase $suite"
    rm -rf "$rootfs"
    mkdir -p "$work"
    debootstrap --variant=minbase "$suite" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
      || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    touch "$rootfs/.postern-complete"
  fi
  log "committing $runtime_image"
  c="$(new_container scratch)"
  containers+=("$c")
  mnt="$("${B[@]}" mount "$c")"
  tar -C "$rootfs" --exclude=./.postern-complete -cf - . | tar -C "$mnt" -xpf -
  "${B[@]}" umount "$c" >/dev/null
  "${B[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --cmd /bin/bash "$c"
  "${B[@]}" commit --quiet "$c" "$runtime_image" >/dev/null
fi

# 2. Build base: the runtime base + a C toolchain for linking + the host's Rust.
if ! have_image "$rust_image"; then
  log "making $rust_image with $rust_version"
  c="$(new_container "$runtime_image")"
  containers+=("$c")
  "${B[@]}" run "$c" -- sh -c 'export DEBIAN_FRONTEND=noninteractive \
    && apt-get update -qq \
    && apt-get install -y -qq --no-install-recommends gcc libc6-dev ca-certificates >/dev/null \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb'
  mnt="$("${B[@]}" mount "$c")"
  # bin/ and lib/ are the toolchain (rustc, cargo, rustdoc, the std rlibs); share/ is
  # documentation. rustc finds its sysroot from its own path: /usr/local.
  tar -C "$sysroot" -cf - bin lib | tar -C "$mnt/usr/local" -xpf -
  # The host's local trust anchors (a TLS-intercepting egress proxy's CA, say), so that
  # cargo inside the build reaches crates.io the way it does on the host.
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    mkdir -p "$mnt/usr/local/share/ca-certificates"
    cp /usr/local/share/ca-certificates/*.crt "$mnt/usr/local/share/ca-certificates/"
  fi
  "${B[@]}" umount "$c" >/dev/null
  "${B[@]}" run "$c" -- update-ca-certificates >/dev/null
  "${B[@]}" config --env CARGO_HOME=/usr/local/cargo "$c"
  "${B[@]}" commit --quiet "$c" "$rust_image" >/dev/null
fi

# 3. The image, from the Dockerfile, with the local bases.
log "buildah bud (cargo build --release inside)"
"${B[@]}" bud --pull=never --isolation chroot \
  --build-arg "RUST_IMAGE=$rust_image" \
  --build-arg "RUNTIME_IMAGE=$runtime_image" \
  -t "$image" -f "$repo/Dockerfile" "$repo"
log "built $image"

# 4. The gateway from the image, once.
c="$(new_container "$image")"
containers+=("$c")
user="$("${B[@]}" inspect --type container --format '{{.OCIv1.Config.User}}' "$c")"
[ "$user" = "65532:65532" ] || { echo "container-image: image user is '$user'" >&2; exit 1; }
version="$("${B[@]}" run "$c" -- /usr/local/bin/postern-gateway --version)"
echo "$version"
case "$version" in
  postern-gateway*) ;;
  *) echo "container-image: unexpected --version output" >&2; exit 1 ;;
esac
empty="$(mktemp)"
trap 'rm -f "$empty"; cleanup' EXIT
"${B[@]}" copy --chmod 0644 "$c" "$empty" /tmp/empty.toml >/dev/null
"${B[@]}" run "$c" -- /usr/local/bin/postern-gateway check-config --config /tmp/empty.toml \
  >"$work/check-config.out"
grep -q '^hostname = ' "$work/check-config.out" \
  || { echo "container-image: check-config printed no configuration" >&2; exit 1; }
echo "check-config on an empty file: $(wc -l <"$work/check-config.out") lines of configuration"
log "ok: gateway ran from $image as $user"
