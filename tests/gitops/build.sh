#!/usr/bin/env bash
# Builds the GitOps controllers that the cluster tests run as host processes (Flux's
# source-controller and kustomize-controller, Argo CD) from their published Go modules, into
# cache directories outside the work tree (see lib.sh: FLUX_DIR, ARGOCD_DIR). Each part is
# built only when its directory is missing or incomplete. Prints each part's directory on
# stdout, one a line (flux first, then argocd).
#
#   tests/gitops/build.sh [flux|argocd|all]          build if needed, print the directories
#   tests/gitops/build.sh [flux|argocd|all] --print  only print the directories (no build)
#
# Layout of FLUX_DIR:   bin/source-controller, bin/kustomize-controller,
#                       crds/flux/*.yaml (config/crd/bases of both modules)
# Layout of ARGOCD_DIR: bin/argocd (one binary: the component is ARGOCD_BINARY_NAME or argv[0];
#                       bin/argocd-application-controller, bin/argocd-repo-server, ... are
#                       symlinks to it), bin/git-verify-wrapper.sh (the repo-server needs it on
#                       PATH), crds/argocd/*.yaml (manifests/crds of the module, CRDs only)
#
# Knobs: FLOTILLA_CACHE (~/.cache/flotilla), FLOTILLA_BUILD_P (2),
#        FLOTILLA_ARGOCD_GOTOOLCHAIN (go1.27.3). Build logs: $FLOTILLA_CACHE/gitops-<part>.build.log
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

PRINT=0 PART=all
for a in "$@"; do
  case "$a" in
    --print) PRINT=1 ;;
    flux|argocd|all) PART="$a" ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument '$a' (usage: tests/gitops/build.sh [flux|argocd|all] [--print])" ;;
  esac
done
if [ "$PART" = all ]; then PARTS=(flux argocd); else PARTS=("$PART"); fi

if [ "$PRINT" = 1 ]; then
  for p in "${PARTS[@]}"; do part_dir "$p"; done
  exit 0
fi

need_build=0
for p in "${PARTS[@]}"; do have_part "$p" "$(part_dir "$p")" || need_build=1; done
if [ "$need_build" = 0 ]; then
  for p in "${PARTS[@]}"; do part_dir "$p"; done
  exit 0
fi

command -v go >/dev/null 2>&1 || die "go not found on PATH (Go >= 1.26 is needed to build the GitOps controllers)"
gov="$(GOTOOLCHAIN=local go env GOVERSION 2>/dev/null || true)"
case "$gov" in
  go1.2[6-9]*|go1.[3-9][0-9]*|go[2-9]*) ;;
  *) die "Go >= 1.26 needed to build the GitOps controllers, found '${gov:-unknown}'" ;;
esac

export CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false"
# Two cores: at most 2 packages at once; linking Argo CD alone takes ~1-3 GB.
PAR="${FLOTILLA_BUILD_P:-2}"
mkdir -p "$FLOTILLA_CACHE"
STAGE=""
trap '[ -z "$STAGE" ] || rm -rf "$STAGE"' EXIT

TIMER=()
[ -x /usr/bin/time ] && TIMER=(/usr/bin/time -f "gitops-time: %e s wall, %U s user, %S s sys, %M KiB max RSS of one process")

gobuild() { # gobuild <wrapper module> <ldflags> <output> <package>   (GOTOOLCHAIN from the caller)
  local mod="$1" ldflags="$2" out="$3" pkg="$4"
  log "building $pkg (log: $LOG)"
  echo "== go build $pkg (GOTOOLCHAIN=$GOTOOLCHAIN) $(date -u +%FT%TZ)" >>"$LOG"
  if ! (cd "$GITOPS_SRC/go/$mod" && "${TIMER[@]}" go build -p "$PAR" -trimpath -ldflags "$ldflags" -o "$out" "$pkg") >>"$LOG" 2>&1; then
    tail -n 30 "$LOG" >&2
    die "build of $pkg failed (wrapper module go/$mod, full log: $LOG)"
  fi
  grep '^gitops-time:' "$LOG" | tail -n 1 | sed 's/^gitops-time:/gitops:   /' >&2 || true
}

module_dir() { # module_dir <wrapper module> <module path>: its directory in the module cache
  local d
  d="$(cd "$GITOPS_SRC/go/$1" && go list -m -f '{{.Dir}}' "$2" 2>>"$LOG")" || true
  { [ -n "$d" ] && [ -d "$d" ]; } || die "module $2 not in the module cache (wrapper module go/$1, log: $LOG)"
  echo "$d"
}

copy_crds() { # copy_crds <from dir> <to dir>: the CustomResourceDefinitions among <from>/*.yaml
  local f n=0
  mkdir -p "$2"
  for f in "$1"/*.yaml; do
    { [ -f "$f" ] && grep -q '^kind: CustomResourceDefinition' "$f"; } || continue
    install -m 644 "$f" "$2/"; n=$((n + 1))
  done
  [ "$n" -gt 0 ] || die "no CRDs found in $1"
}

build_flux() {
  export GOTOOLCHAIN=local
  gobuild source-controller "-s -w" "$STAGE/bin/source-controller" github.com/fluxcd/source-controller
  gobuild kustomize-controller "-s -w" "$STAGE/bin/kustomize-controller" github.com/fluxcd/kustomize-controller
  copy_crds "$(module_dir source-controller github.com/fluxcd/source-controller)/config/crd/bases" "$STAGE/crds/flux"
  copy_crds "$(module_dir kustomize-controller github.com/fluxcd/kustomize-controller)/config/crd/bases" "$STAGE/crds/flux"
}

build_argocd() {
  export GOTOOLCHAIN="$ARGOCD_GOTOOLCHAIN"
  local src kubectl date C=github.com/argoproj/argo-cd/v3/common c
  # The stamps of Argo CD's Makefile: common.version without the "v" (the module has no commit
  # hash, so `argocd version` says v3.6.1+unknown), kubectlVersion = client-go's version, the
  # build date = the module's publication time (the first run fetches the toolchain if needed).
  echo "== resolving stamps (GOTOOLCHAIN=$GOTOOLCHAIN)" >>"$LOG"
  kubectl="$(cd "$GITOPS_SRC/go/argocd" && go list -m -f '{{if .Replace}}{{.Replace.Version}}{{else}}{{.Version}}{{end}}' k8s.io/client-go 2>>"$LOG")" \
    || { tail -n 20 "$LOG" >&2; die "cannot resolve k8s.io/client-go in go/argocd (log: $LOG)"; }
  date="$(cd "$GITOPS_SRC/go/argocd" && go list -m -f '{{with .Time}}{{.UTC.Format "2006-01-02T15:04:05Z"}}{{end}}' github.com/argoproj/argo-cd/v3 2>>"$LOG")" || true
  gobuild argocd "-s -w -X $C.version=${ARGOCD_VERSION#v} -X $C.buildDate=${date:-1970-01-01T00:00:00Z} -X $C.gitTreeState=clean -X $C.kubectlVersion=$kubectl" \
    "$STAGE/bin/argocd" github.com/argoproj/argo-cd/v3/cmd
  src="$(module_dir argocd github.com/argoproj/argo-cd/v3)"
  install -m 755 "$src/hack/git-verify-wrapper.sh" "$STAGE/bin/git-verify-wrapper.sh"
  for c in "${ARGOCD_COMPONENTS[@]}"; do ln -s argocd "$STAGE/bin/$c"; done
  copy_crds "$src/manifests/crds" "$STAGE/crds/argocd"
}

for p in "${PARTS[@]}"; do
  dir="$(part_dir "$p")"
  if have_part "$p" "$dir"; then echo "$dir"; continue; fi
  LOG="$FLOTILLA_CACHE/gitops-$p.build.log"
  : >"$LOG"
  STAGE="$(mktemp -d "$FLOTILLA_CACHE/.gitops-$p.XXXXXX")"
  mkdir -p "$STAGE/bin"
  start=$(date +%s)
  "build_$p"
  have_part "$p" "$STAGE" || die "build of $p left an incomplete directory (log: $LOG)"
  chmod 755 "$STAGE"
  # Another build may have finished first: keep it if complete, else replace it.
  if ! mv -T "$STAGE" "$dir" 2>/dev/null; then
    if have_part "$p" "$dir"; then rm -rf "$STAGE"; else rm -rf "$dir"; mv -T "$STAGE" "$dir"; fi
  fi
  STAGE=""
  log "built $p in $(( $(date +%s) - start ))s into $dir"
  echo "$dir"
done
