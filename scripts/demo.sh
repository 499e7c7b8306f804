#!/usr/bin/env bash
# Set up (idempotent) and run the main job: render a synthetic inspection flight and summarise it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh full
out=${1:-demo-out}
.venv/bin/pli data synth --out "$out/flight" --frames "${FRAMES:-24}" --seed "${SEED:-7}"
.venv/bin/pli data stats "$out/flight"
echo "faults of the flight (ground truth):"
cat "$out/flight/faults.csv"
