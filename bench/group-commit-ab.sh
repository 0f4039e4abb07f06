#!/usr/bin/env bash
# Side by side on Docker: the shard services' group commit with 4 batches in
# flight against 1 (topology groupCommit.maxInFlight), two rounds in
# alternating order (4 then 1, then 1 then 4, so that an order effect falls
# on both), one-vote requests at 64 and 128 in flight, every run verified.
#   bash bench/group-commit-ab.sh [seconds]     (after npm run build and scripts/setup.sh)
# Prints one line per run; each cluster is removed after its runs.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-12}"
[[ "$secs" =~ ^[1-9][0-9]*$ ]] || { echo "error: seconds must be a whole number >= 1 (e.g. bash bench/group-commit-ab.sh 12)" >&2; exit 2; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
for round in 1 2; do
  order="4 1"
  [ "$round" = 2 ] && order="1 4"
  for n in $order; do
    printf 'cluster: gc%s\ngroupCommit:\n  maxInFlight: %s\n' "$n" "$n" >"$tmp/gc$n.yaml"
    node bin/dvote.js up -f "$tmp/gc$n.yaml" --runtime docker -q >/dev/null
    sleep 3
    for c in 64 128; do
      node bin/dvote.js --cluster "gc$n" bench --duration "${secs}s" --concurrency "$c" --votes 2000000 --voters 3000000 --json 2>/dev/null |
        node -e 'let s="";process.stdin.on("data",(d)=>(s+=d)).on("end",()=>{const b=JSON.parse(s),v=b.verify;console.log(`round ${process.argv[1]} maxInFlight ${process.argv[2]} c${process.argv[3]}: ${b.throughput.votesPerSec} votes/s p50 ${b.latencyMs.p50} p99 ${b.latencyMs.p99} ms verify ${v.ok} (lost ${v.lost}, dup ${v.duplicated}, div ${v.divergent}) load ${require("os").loadavg()[0].toFixed(1)}`)})' "$round" "$n" "$c" || true
    done
    node bin/dvote.js --cluster "gc$n" down --volumes -q >/dev/null
  done
done
