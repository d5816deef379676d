#!/usr/bin/env bash
# Builds the real Kubernetes programs the operator's integration tests run (kube-apiserver,
# kube-controller-manager, kubectl, etcd, helm) from the Go module proxy, with the small Go
# modules under tests/k8s/, and copies the CRDs of cert-manager and the Prometheus operator
# out of their Go modules. Prints the bin dir on its last line.
#
#   bin dir: ${POSTERN_K8S_BIN:-$HOME/.cache/postern/k8s/<kubernetes version>/bin}
#   CRDs:    $HOME/.cache/postern/k8s/crds/{cert-manager,prometheus-operator}/
#   Go:      GOMODCACHE and GOCACHE under $HOME/.cache/postern/go
#
# A binary that exists is not built again, so a repeated run is instant. The cold build
# takes long: about 20 CPU-minutes (11-13 min on 2 idle cores), most of it kube-apiserver;
# builds run under `nice -n 19`. The caches take about 5 GiB (GOCACHE 3.7 GiB, modules
# 1.3 GiB, binaries 330 MiB).
# Versions come from the go.mod files under tests/k8s/ (tests/k8s/apiserver/pin.sh moves
# Kubernetes to another release).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
mods="$here/k8s"
cache="$HOME/.cache/postern"

export GOMODCACHE="$cache/go/mod"
export GOCACHE="$cache/go/build"
# No VCS stamping: tests/k8s/etcd sits in this repository, whose git state is irrelevant.
export GOFLAGS="-modcacherw -buildvcs=false"
export CGO_ENABLED=0
# Never fetch another Go toolchain behind our back: the machine's Go (1.26) builds these.
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"

modversion() { # modversion DIR MODULE -> the version DIR/go.mod requires
  awk -v m="$2" '$1 == m && $2 ~ /^v/ {print $2; exit} $1 == "require" && $2 == m {print $3; exit}' "$1/go.mod"
}
k8s_version="$(modversion "$mods/apiserver" k8s.io/kubernetes)"
etcd_version="$(modversion "$mods/etcd" go.etcd.io/etcd/server/v3)"
helm_version="$(modversion "$mods/helm" helm.sh/helm/v3)"
[ -n "$k8s_version" ] && [ -n "$etcd_version" ] && [ -n "$helm_version" ] || {
  echo "k8s-binaries: cannot read versions from $mods/*/go.mod" >&2
  exit 1
}
cert_manager_version=v1.21.2
prometheus_operator_version=v0.85.0

bin="${POSTERN_K8S_BIN:-$cache/k8s/$k8s_version/bin}"
crds="$cache/k8s/crds"
mkdir -p "$bin" "$crds" "$GOMODCACHE" "$GOCACHE"

# One build at a time (tests may call this script concurrently).
exec 9>"$cache/k8s/.build.lock"
flock 9

# build NAME MODULE_DIR PACKAGE LDFLAGS: builds to a temporary name, then renames, so an
# interrupted build never leaves a binary that looks done.
build() {
  local name="$1" dir="$2" pkg="$3" ldflags="$4"
  if [ -x "$bin/$name" ]; then
    return 0
  fi
  echo "k8s-binaries: building $name ($pkg) ..." >&2
  local TIMEFORMAT="k8s-binaries: built $name in %0R s (CPU %0U s user + %0S s sys)"
  time (cd "$dir" && nice -n 19 go build -trimpath -ldflags "-s -w $ldflags" -o "$bin/.$name.tmp" "$pkg") >&2
  mv "$bin/.$name.tmp" "$bin/$name"
}

minor="${k8s_version#v1.}"
minor="${minor%%.*}"
k8s_ldflags=""
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_ldflags+=" -X $p.gitVersion=$k8s_version -X $p.gitMajor=1 -X $p.gitMinor=$minor"
  k8s_ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
done

build etcd "$mods/etcd" . ""
build kube-apiserver "$mods/apiserver" k8s.io/kubernetes/cmd/kube-apiserver "$k8s_ldflags"
# kubectl of the same release: the image's kubectl (if any) may be more than one minor
# version away from this API server.
build kubectl "$mods/apiserver" k8s.io/kubernetes/cmd/kubectl "$k8s_ldflags"
build kube-controller-manager "$mods/apiserver" k8s.io/kubernetes/cmd/kube-controller-manager "$k8s_ldflags"
# helm's default Kubernetes version (for `helm template` and lint) is that of the test cluster.
build helm "$mods/helm" helm.sh/helm/v3/cmd/helm "-X helm.sh/helm/v3/internal/version.version=$helm_version \
  -X helm.sh/helm/v3/internal/version.gitTreeState=clean \
  -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor \
  -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor"

# copy_crds NAME MODULE@VERSION SUBDIR FILE...: the CRD files that ship inside a Go module.
copy_crds() {
  local name="$1" module="$2" sub="$3"
  shift 3
  local dest="$crds/$name" stamp="$crds/$name/.version"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$module" ]; then
    return 0
  fi
  local dir
  dir="$(cd "$cache/k8s" && nice -n 19 go mod download -json "$module" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [ -d "$dir/$sub" ] || { echo "k8s-binaries: $module has no $sub" >&2; exit 1; }
  rm -rf "$dest"
  mkdir -p "$dest"
  local f
  for f in "$@"; do
    cp "$dir/$sub/$f" "$dest/"
  done
  chmod u+w "$dest"/*.yaml
  echo "$module" > "$stamp"
  echo "k8s-binaries: CRDs of $module in $dest" >&2
}
copy_crds cert-manager "github.com/cert-manager/cert-manager@$cert_manager_version" deploy/crds \
  acme.cert-manager.io_challenges.yaml acme.cert-manager.io_orders.yaml \
  cert-manager.io_certificaterequests.yaml cert-manager.io_certificates.yaml \
  cert-manager.io_clusterissuers.yaml cert-manager.io_issuers.yaml
copy_crds prometheus-operator "github.com/prometheus-operator/prometheus-operator@$prometheus_operator_version" \
  example/prometheus-operator-crd \
  monitoring.coreos.com_servicemonitors.yaml monitoring.coreos.com_podmonitors.yaml \
  monitoring.coreos.com_prometheusrules.yaml

echo "$bin"
