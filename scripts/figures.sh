#!/usr/bin/env bash
# make figures: the figures of the README's "Figures" table that tests measure, printed beside the
# commit they were measured at. It runs the cluster tests one at a time (so that a timing is not
# another test's load), the CLI's absurd-input test and the NetworkPolicy engine, prints each line
# that carries a figure, then the cluster's own figures (make cluster-smoke). A failing test fails
# it: a figure of a run that failed is no figure. The whole output: target/figures.log.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CARGO="${CARGO:-cargo}"
commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
dirty=""
git diff --quiet HEAD -- src tests Cargo.toml Cargo.lock 2>/dev/null || dirty=" with uncommitted changes"
echo "figures: commit $commit$dirty, $(date -u +%F), $(nproc) cores"
make --no-print-directory cluster-up >/dev/null || exit $?
log="$ROOT/target/figures.log"
tests=()
for t in $CLUSTER_TESTS cli netpol_engine; do tests+=(--test "$t"); done
FLOTILLA_REQUIRE_CLUSTER=1 FLOTILLA_KUBECONFIG="$ROOT/target/cluster/kubeconfig" \
  "$CARGO" test -q "${tests[@]}" -- --nocapture --test-threads=1 >"$log" 2>&1
rc=$?
# A figure is a line that ends in a time or names memory or a count of verdicts.
sed 's/^[.]*//' "$log" | grep -E '^[a-zA-Z].*([0-9][0-9.]*s|[0-9][0-9.]*s \(.*\)|MiB|verdicts.*)$' | grep -v '^test result'
if [ "$rc" -ne 0 ]; then
  echo "figures: the tests failed (exit $rc), so these are no figures; $log:" >&2
  grep -E '^test .* FAILED$|panicked at' "$log" >&2
  exit "$rc"
fi
make --no-print-directory cluster-smoke
