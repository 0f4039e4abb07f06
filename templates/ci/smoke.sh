#!/usr/bin/env bash
# A CI smoke test built on dvote's exit codes and JSON documents:
# bring a small cluster up, vote, check the report, always tear down.
#   bash templates/ci/smoke.sh [--runtime docker|process]
# Needs: node, jq, and the project set up (bash scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNTIME="${2:-auto}"
[[ "${1:-}" == "--runtime" ]] || RUNTIME=auto
CLUSTER="smoke-$$"
dvote() { node bin/dvote.js --cluster "$CLUSTER" "$@"; }
trap 'dvote down --volumes --quiet || true' EXIT

dvote up --runtime "$RUNTIME" --managers 3 --brokers 3 --shards 2 --replicas 1 --quiet --json > up.json
echo "up: $(jq -r '.status.nodes | length' up.json) nodes in $(jq -r '.totalMs' up.json) ms"

# Exit code 1 means the bench lost, duplicated or diverged a vote.
dvote bench --votes 2000 --concurrency 32 --json > bench.json
jq -e '.verify.ok and .verify.lost == 0' bench.json > /dev/null
echo "bench: $(jq -r '.throughput.votesPerSec' bench.json) votes/s, p99 $(jq -r '.latencyMs.p99' bench.json) ms, verified"

# Exit code 1 means some node is unhealthy; the document says which.
if ! dvote report --json > report.json; then
  jq -r '.problems[]' report.json >&2
  exit 1
fi
echo "report: $(jq -r '[.nodes[] | select(.healthy)] | length' report.json)/$(jq -r '.nodes | length' report.json) nodes healthy"
