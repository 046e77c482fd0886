#!/usr/bin/env bash
# Fetches the Gateway API's own standard-channel CRDs (gateway.networking.k8s.io: GatewayClass,
# Gateway, HTTPRoute, GRPCRoute, ReferenceGrant, BackendTLSPolicy, ListenerSet, TCPRoute,
# TLSRoute, UDPRoute) at a pinned version and prints the absolute path of one YAML file holding
# all of them on stdout, so the cluster tests have the API server judge Flotilla's rendered
# routes by the Gateway API's real schema and CEL rules, not a stand-in.
#
#   tests/cluster/gateway-api-crds.sh     download if needed, print the CRDs' path
#
# The CRDs come from the Gateway API's Go module (its zip holds config/crd/standard, the files
# its standard-install.yaml is made of), downloaded into Go's module cache and checked against
# the hash pinned below by ../support/go-module-dir.sh. Only the CRDs are taken: the channel's
# ValidatingAdmissionPolicy "safe-upgrades" (gateway.networking.k8s.io_vap_safeupgrades.yaml)
# is left out. The files are joined into
# $FLOTILLA_CACHE/gateway-api-crds-<version>-<hash>/gateway-api-crds.yaml
# (~/.cache/flotilla by default), <hash> covering the module hash and this script. Apply it
# server-side: HTTPRoute's CRD alone is ~440 kB, more than client-side apply's last-applied
# annotation may hold (256 KiB).
# Cost, measured on 2 cores: cold (module not in Go's module cache: a 2.8 MB zip from the proxy,
# 14 MB unpacked) 0.5-1.3 s; module cached but no joined file 0.3 s; warm (the joined file, 1.2 MB,
# in the cache) ~10 ms, with no network.
# Errors go to stderr with a non-zero exit.
set -euo pipefail

GW_MODULE="sigs.k8s.io/gateway-api"
# v1.6.3 (2026-10-06), the newest the proxy serves that Go 1.26 accepts: v1.7.0 (2026-10-29)
# declares `go 1.27.0`, which ../support/go-module-dir.sh (GOTOOLCHAIN=local) refuses, and
# v1.7.1 is "not available" there.
GW_VERSION="v1.6.3"
GW_SUM="h1:lKpJa5bGlraC/QeACvCpsHLdmO6y0iKfzVl6gzaFEYc="
CRDS=(
  config/crd/standard/gateway.networking.k8s.io_gatewayclasses.yaml
  config/crd/standard/gateway.networking.k8s.io_gateways.yaml
  config/crd/standard/gateway.networking.k8s.io_httproutes.yaml
  config/crd/standard/gateway.networking.k8s.io_grpcroutes.yaml
  config/crd/standard/gateway.networking.k8s.io_referencegrants.yaml
  config/crd/standard/gateway.networking.k8s.io_backendtlspolicies.yaml
  config/crd/standard/gateway.networking.k8s.io_listenersets.yaml
  config/crd/standard/gateway.networking.k8s.io_tcproutes.yaml
  config/crd/standard/gateway.networking.k8s.io_tlsroutes.yaml
  config/crd/standard/gateway.networking.k8s.io_udproutes.yaml
)

die() { echo "gateway-api-crds: error: $*" >&2; exit 1; }

FLOTILLA_CACHE="${FLOTILLA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/flotilla}"
key="$(printf '%s\n' "$GW_MODULE@$GW_VERSION $GW_SUM" | cat - "${BASH_SOURCE[0]}" | sha256sum | cut -c1-12)"
DIR="$FLOTILLA_CACHE/gateway-api-crds-$GW_VERSION-$key"
OUT="$DIR/gateway-api-crds.yaml"
if [ -s "$OUT" ]; then echo "$OUT"; exit 0; fi

dir="$("$(dirname "${BASH_SOURCE[0]}")/../support/go-module-dir.sh" "$GW_MODULE" "$GW_VERSION" "$GW_SUM" \
  "the Gateway API CRDs")" || exit 1
for crd in "${CRDS[@]}"; do
  [ -f "$dir/$crd" ] || die "$GW_MODULE@$GW_VERSION has no $crd (in $dir)"
done

mkdir -p "$FLOTILLA_CACHE"
STAGE="$(mktemp -d "$FLOTILLA_CACHE/.gateway-api-crds.XXXXXX")"
trap 'rm -rf "$STAGE"' EXIT
for crd in "${CRDS[@]}"; do
  grep -q '^kind: CustomResourceDefinition$' "$dir/$crd" || die "$dir/$crd is not a CustomResourceDefinition"
  ! grep -q '^---' "$dir/$crd" || die "$dir/$crd holds more than one YAML document"
  printf -- '---\n# %s@%s %s\n' "$GW_MODULE" "$GW_VERSION" "$crd"
  cat "$dir/$crd"
  # A file without a final newline would glue the next "---" to its last line.
  [ -z "$(tail -c 1 "$dir/$crd")" ] || echo
done >"$STAGE/gateway-api-crds.yaml"
[ -s "$STAGE/gateway-api-crds.yaml" ] || die "could not write $STAGE/gateway-api-crds.yaml"
chmod 755 "$STAGE"
# Another run may have finished first: keep whichever landed, both are the same CRDs.
if mv -T "$STAGE" "$DIR" 2>/dev/null; then trap - EXIT; fi
[ -s "$OUT" ] || die "could not install $OUT"
echo "$OUT"
