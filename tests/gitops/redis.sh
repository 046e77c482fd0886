#!/usr/bin/env bash
# Prints the path of redis-server (Argo CD's cache in the GitOps cluster tests), installing
# Debian's redis-server package first when it is missing. The package's own service is not used:
# each test starts its own server on a port of its own.
set -euo pipefail
if ! command -v redis-server >/dev/null 2>&1; then
  command -v apt-get >/dev/null 2>&1 || { echo "gitops: error: redis-server is missing and apt-get is not available to install it" >&2; exit 1; }
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "gitops: installing Debian's redis-server" >&2
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y --no-install-recommends redis-server >&2 \
    || { $sudo apt-get update >&2 && $sudo apt-get install -y --no-install-recommends redis-server >&2; }
fi
command -v redis-server
