#!/usr/bin/env bash
# Set up (idempotent) and run the main job end to end on generated data:
#   1. render a synthetic inspection flight (geotagged photos, labels, ground truth),
#   2. fly it through the edge runtime with the shipped default model (alerts into the outbox),
#   3. send the alerts home: MQTT over 4G, then BeiDou (simulated terminals) past a ridge, and
#      show them arriving at a stand-in for the cloud, which acknowledges each one.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh full
out=${1:-demo-out}
rm -rf "$out/outbox"
.venv/bin/pli data synth --out "$out/flight" --frames "${FRAMES:-24}" --size 1920x1080 --seed "${SEED:-21}"
.venv/bin/pli data stats "$out/flight"
echo "faults of the flight (ground truth):"
cat "$out/flight/faults.csv"
# The drone's identity, as on a real one: one device file for every drone-side command; its key
# (made here for the demo, never committed) stays in a file beside it, outside the config.
mkdir -p "$out"
[ -s "$out/device.key" ] || (umask 077 && .venv/bin/python -c "import os; print(os.urandom(32).hex())" > "$out/device.key")
.venv/bin/pli device init --drone-id UAV-01 --key-id 1 --ground-address 0179773 --key-file "$out/device.key" \
  --out "$out/device.json"
.venv/bin/pli edge run --config "$out/device.json" --source "$out/flight/images" \
  --model models/pli-default-int8.onnx --outbox "$out/outbox/outbox.db"
.venv/bin/pli link status --config "$out/device.json" --outbox "$out/outbox/outbox.db" || true
.venv/bin/python scripts/demo_links.py "$out/outbox/outbox.db" "$out/device.json"
