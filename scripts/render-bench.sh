#!/usr/bin/env bash
# make bench-render: `flotilla render` (release build) of N services each calling the next,
# spread over 10 namespaces, for N = 1000 2000 4000 8000 (or SIZES); CPU time, wall time, peak RSS.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SIZES="${SIZES:-1000 2000 4000 8000}"
OUT="$ROOT/target/render-bench"
mkdir -p "$OUT"
commit="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
dirty=""
git -C "$ROOT" diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || dirty=" with uncommitted changes"
echo "bench-render: commit $commit$dirty, $(date -u +%F), $(nproc) cores"
echo "| services | CPU (user) | wall | peak RSS |"
echo "| --- | --- | --- | --- |"
for n in $SIZES; do
  f="$OUT/world-$n.yaml"
  awk -v n="$n" 'BEGIN { for (i = 0; i < n; i++) {
    printf "---\napiVersion: flotilla.dev/v1alpha1\nkind: Microservice\nmetadata: {name: svc-%d, namespace: ns-%d}\nspec:\n  image: registry.example/svc:1\n", i, i % 10
    if (i + 1 < n) printf "  dependencies: [{service: svc-%d, namespace: ns-%d}]\n", i + 1, (i + 1) % 10 } }' > "$f"
  /usr/bin/time -f "| $n | %U s | %e s | %M KiB |" -o "$OUT/time-$n" "$ROOT/target/release/flotilla" render -f "$f" > /dev/null
  cat "$OUT/time-$n"
done
