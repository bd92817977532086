#!/usr/bin/env bash
# The spike's measurements: wall/CPU time and allocations per forwarded packet (median of
# ROUNDS alternating runs), then instructions per forwarded packet under callgrind.
# Usage: ./bench.sh [ROUNDS] [callgrind]   (from spikes/engine; builds in release first)
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR="$PWD/target"
cargo build --release -q
BIN=./target/release/engine-spike
ROUNDS=${1:-5}
NS=(1 4 10 25)
VARIANTS=("rtc" "str0m" "str0m --no-tick")
OUT=$(mktemp)
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq "$ROUNDS"); do
  for kind in video audio; do
    flag=""; [ "$kind" = audio ] && flag="--audio"
    for n in "${NS[@]}"; do
      for v in "${VARIANTS[@]}"; do
        # shellcheck disable=SC2086
        line=$($BIN $v --subscribers "$n" --packets 4000 $flag)
        echo "$v|$kind|$n|$line" >>"$OUT"
      done
    done
  done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p"; }
printf '| engine | kind | N | CPU ns/fwd (median) | min–max | wall ns/fwd (median) | allocs/fwd |\n|---|---|---:|---:|---:|---:|---:|\n'
for kind in video audio; do
  for n in "${NS[@]}"; do
    for v in "${VARIANTS[@]}"; do
      rows=$(awk -F'|' -v v="$v" -v k="$kind" -v n="$n" '$1==v && $2==k && $3==n' "$OUT")
      cpu=$(echo "$rows" | field cpu_ns_per_fwd)
      printf '| %s | %s | %s | %s | %s–%s | %s | %s |\n' "$v" "$kind" "$n" \
        "$(echo "$cpu" | median)" "$(echo "$cpu" | sort -n | head -1)" "$(echo "$cpu" | sort -n | tail -1)" \
        "$(echo "$rows" | field wall_ns_per_fwd | median)" "$(echo "$rows" | field allocs_per_fwd | median)"
    done
  done
done
rm -f "$OUT"
[ "${2:-}" = callgrind ] || exit 0
# Instructions: deterministic, so one run each; only the timed region is collected.
printf '\n| engine | kind | N | instructions/fwd |\n|---|---|---:|---:|\n'
CG=$(mktemp -d)
for kind in video audio; do
  flag=""; [ "$kind" = audio ] && flag="--audio"
  for n in "${NS[@]}"; do
    for v in "${VARIANTS[@]}"; do
      # shellcheck disable=SC2086
      valgrind --tool=callgrind --callgrind-out-file="$CG/out" --collect-atstart=no \
        --toggle-collect='*timed_phase*' $BIN $v --subscribers "$n" --packets 1000 $flag >/dev/null 2>&1
      ir=$(callgrind_annotate "$CG/out" 2>/dev/null | sed -n 's/^ *\([0-9,]*\) .*PROGRAM TOTALS.*/\1/p' | tr -d ,)
      printf '| %s | %s | %s | %s |\n' "$v" "$kind" "$n" "$((ir / (1000 * n)))"
    done
  done
done
rm -rf "$CG"
