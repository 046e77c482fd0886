# shellcheck shell=bash disable=SC2034  # variables are used by the scripts that source this
# Shared settings for the GitOps controller builds (Flux, Argo CD). Sourced, not executed.
# All paths are absolute, derived from this file's location, so the scripts work from any
# current directory.

GITOPS_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$GITOPS_SRC/../.." && pwd)"

# Versions (must match the wrapper modules under go/).
FLUX_SOURCE_CONTROLLER_VERSION="v1.9.6"     # github.com/fluxcd/source-controller
FLUX_KUSTOMIZE_CONTROLLER_VERSION="v1.9.6"  # github.com/fluxcd/kustomize-controller
ARGOCD_VERSION="v3.6.1"                     # github.com/argoproj/argo-cd/v3 (+ gitops-engine/v3)
# Argo CD's go.mod says go 1.27.0: the go command fetches this toolchain from the module proxy.
ARGOCD_GOTOOLCHAIN="${FLOTILLA_ARGOCD_GOTOOLCHAIN:-go1.27.3}"

# Build cache: one directory per part, keyed by the versions, the part's wrapper modules
# (go.mod, go.sum) and BUILD_REV, so a version bump lands in a new directory and rebuilds.
# Bump BUILD_REV when build.sh changes its flags or the output layout.
BUILD_REV=1
FLOTILLA_CACHE="${FLOTILLA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/flotilla}"

part_modules() { # part_modules flux|argocd -> wrapper module dirs under go/
  case "$1" in
    flux) echo "source-controller kustomize-controller" ;;
    argocd) echo "argocd" ;;
    *) return 1 ;;
  esac
}

cache_key() { # cache_key flux|argocd
  local m
  {
    echo "rev=$BUILD_REV part=$1"
    [ "$1" = argocd ] && echo "toolchain=$ARGOCD_GOTOOLCHAIN"
    for m in $(part_modules "$1"); do cat "$GITOPS_SRC/go/$m/go.mod" "$GITOPS_SRC/go/$m/go.sum" 2>/dev/null || echo "missing $m"; done
  } | sha256sum | cut -c1-12
}

FLUX_DIR="$FLOTILLA_CACHE/gitops-flux-sc-$FLUX_SOURCE_CONTROLLER_VERSION-kc-$FLUX_KUSTOMIZE_CONTROLLER_VERSION-$(cache_key flux)"
ARGOCD_DIR="$FLOTILLA_CACHE/gitops-argocd-$ARGOCD_VERSION-$(cache_key argocd)"

# What a complete directory holds (paths relative to it; crds/* must hold at least one file).
FLUX_FILES=(bin/source-controller bin/kustomize-controller)
ARGOCD_FILES=(bin/argocd bin/git-verify-wrapper.sh)
# Names Argo CD's single binary answers to (argv[0] or ARGOCD_BINARY_NAME): symlinks in bin/.
ARGOCD_COMPONENTS=(argocd-application-controller argocd-repo-server argocd-applicationset-controller
  argocd-server argocd-commit-server argocd-cmp-server argocd-notifications argocd-git-ask-pass)

part_dir() { # part_dir flux|argocd
  case "$1" in flux) echo "$FLUX_DIR" ;; argocd) echo "$ARGOCD_DIR" ;; *) return 1 ;; esac
}

die() { echo "gitops: error: $*" >&2; exit 1; }
log() { echo "gitops: $*" >&2; }

have_part() { # have_part flux|argocd DIR: the directory is complete
  local dir="$2" f files crds
  case "$1" in
    flux) files=("${FLUX_FILES[@]}"); crds=flux ;;
    argocd) files=("${ARGOCD_FILES[@]}"); crds=argocd ;;
  esac
  for f in "${files[@]}"; do [ -x "$dir/$f" ] || return 1; done
  compgen -G "$dir/crds/$crds/*.yaml" >/dev/null
}
