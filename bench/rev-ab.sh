#!/usr/bin/env bash
# Two revisions of dvote side by side on the process runtime: a fresh default
# cluster per run, in alternating order (A B, B A, ...), so that an order
# effect or a drift of the machine's load falls on both. Each cluster takes
# --batch 100 at 16 requests in flight and one vote per request at 128, both
# after a 3 s warm-up and verified copy by copy.
#   bash bench/rev-ab.sh <rev-A> [seconds] [pairs]     (after npm run build)
# A is built from git (a temporary worktree sharing this checkout's
# node_modules); B is this working tree as built in dist/. Prints one line
# per run and a summary of the per-pair ratios B/A.
set -euo pipefail
cd "$(dirname "$0")/.."
rev="${1:-}"
secs="${2:-12}"
pairs="${3:-2}"
die() { echo "error: $*" >&2; exit 2; }
[ -n "$rev" ] || die "name the revision to compare with (e.g. bash bench/rev-ab.sh HEAD~1 12 2)"
git rev-parse --verify -q "$rev^{commit}" >/dev/null || die "'$rev' is not a git revision here (try a commit id or HEAD~1)"
[[ "$secs" =~ ^[1-9][0-9]*$ ]] || die "seconds must be a whole number >= 1"
[[ "$pairs" =~ ^[1-9][0-9]*$ ]] || die "pairs must be a whole number >= 1"
[ -f dist/cli/main.js ] || die "no build in dist/: run npm run build first"
node bin/dvote.js status >/dev/null 2>&1 && die "a cluster named dvote is up: take it down first (dvote down --volumes)"
tmp="$(mktemp -d)"
cleanup() {
  node bin/dvote.js down --volumes -q >/dev/null 2>&1 || true
  git worktree remove --force "$tmp/a" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT
echo "building $rev in $tmp/a ..." >&2
git worktree add -f --detach "$tmp/a" "$rev" -q
ln -s "$PWD/node_modules" "$tmp/a/node_modules"
(cd "$tmp/a" && npm run build --silent >/dev/null 2>&1) || die "npm run build failed for $rev"
declare -A dir=([A]="$tmp/a" [B]="$PWD")
summary() {
  node -e '
    let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
      const b = JSON.parse(s), v = b.verify;
      console.log(`${process.argv[1]} ${process.argv[2]}: ${b.throughput.votesPerSec} votes/s p50 ${b.latencyMs.p50} p99 ${b.latencyMs.p99} ms verify ${v.ok} (lost ${v.lost}, dup ${v.duplicated}, div ${v.divergent}) load ${require("os").loadavg()[0].toFixed(1)}`);
    });' "$1" "$2"
}
out="$tmp/runs.txt"
for ((p = 1; p <= pairs; p++)); do
  order="A B"
  ((p % 2 == 0)) && order="B A"
  for x in $order; do
    d="${dir[$x]}"
    node "$d/bin/dvote.js" up --runtime process -q >/dev/null
    sleep 2
    node "$d/bin/dvote.js" bench --duration "${secs}s" --warmup 3s --batch 100 --concurrency 16 --json 2>/dev/null | summary "pair $p $x" batch100 | tee -a "$out"
    node "$d/bin/dvote.js" bench --duration "${secs}s" --warmup 3s --concurrency 128 --json 2>/dev/null | summary "pair $p $x" single-c128 | tee -a "$out"
    node "$d/bin/dvote.js" down --volumes -q >/dev/null
  done
done
node -e '
  const lines = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n");
  const runs = lines.map((l) => { const m = /^pair (\d+) ([AB]) (\S+): ([\d.]+) votes\/s/.exec(l); return m && { pair: +m[1], x: m[2], kind: m[3], v: +m[4] }; }).filter(Boolean);
  for (const kind of [...new Set(runs.map((r) => r.kind))]) {
    const ratios = [];
    for (const p of [...new Set(runs.map((r) => r.pair))]) {
      const a = runs.find((r) => r.pair === p && r.x === "A" && r.kind === kind), b = runs.find((r) => r.pair === p && r.x === "B" && r.kind === kind);
      if (a && b) ratios.push(b.v / a.v);
    }
    const mean = ratios.reduce((s, r) => s + r, 0) / ratios.length;
    console.log(`${kind}: B/A per pair ${ratios.map((r) => r.toFixed(2)).join(" ")}; mean ${mean.toFixed(2)}; B ahead in ${ratios.filter((r) => r > 1).length} of ${ratios.length}`);
  }' "$out"
