#!/usr/bin/env bash
# make repeat RUNS=N LOAD=K: run `make test` N times in a row while K busy processes keep the
# cores loaded (stress-ng --cpu K when installed, else K shell busy loops), then print, per test,
# how many runs passed and failed. Logs: target/repeat/run-<i>.log. Exit 1 if any run failed.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUNS="${RUNS:-5}"
LOAD="${LOAD:-2}"
OUT="$ROOT/target/repeat"
mkdir -p "$OUT"

LOAD_PIDS=()
stop_load() { [ "${#LOAD_PIDS[@]}" -eq 0 ] || kill "${LOAD_PIDS[@]}" 2>/dev/null; }
trap stop_load EXIT
if [ "$LOAD" -gt 0 ]; then
  if command -v stress-ng >/dev/null; then
    stress-ng --cpu "$LOAD" --quiet & LOAD_PIDS+=($!)
  else
    for _ in $(seq 1 "$LOAD"); do bash -c 'while :; do :; done' & LOAD_PIDS+=($!); done
  fi
  echo "repeat: $LOAD busy process(es) keep the cores loaded"
fi

failed_runs=0
for i in $(seq 1 "$RUNS"); do
  start=$(date +%s)
  if make -C "$ROOT" --no-print-directory test > "$OUT/run-$i.log" 2>&1; then rc=0; else rc=$?; failed_runs=$((failed_runs + 1)); fi
  echo "repeat: run $i/$RUNS exit $rc in $(( $(date +%s) - start )) s (log: $OUT/run-$i.log)"
done
stop_load

# Per test: "test NAME ... ok|FAILED" lines of cargo's harness, counted over every run.
echo
printf '%-80s %6s %6s\n' test passed failed
cat "$OUT"/run-*.log | sed -nE 's/^test ([^ ]+) \.\.\. (ok|FAILED)$/\1 \2/p' | sort | awk '
  { if ($2 == "ok") p[$1]++; else f[$1]++; seen[$1] = 1 }
  END { for (t in seen) printf "%-80s %6d %6d\n", t, p[t], f[t] }' | sort
echo
echo "$((RUNS - failed_runs)) passed, $failed_runs failed"
[ "$failed_runs" -eq 0 ]
