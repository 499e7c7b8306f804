#!/usr/bin/env bash
# Set up (idempotent) and run the main job end to end on generated data:
#   1. render a synthetic inspection flight (geotagged photos, labels, ground truth),
#   2. fly it through the edge runtime with the shipped default model (alerts into the outbox),
#   3. send the alerts home: MQTT over 4G, then BeiDou (simulated terminals) past a ridge, and
#      show them arriving at a stand-in for the cloud, which acknowledges each one.
#
# `bash scripts/demo.sh --loop [OUT]`: the whole loop instead (scripts/demo_loop.py): flight 1's
# alerts reviewed and its photos annotated in Label Studio, a learning run, the gates, a canary
# release that a drone swaps in during flight 2, and a summary of what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--loop" ]; then
  shift
  bash scripts/setup.sh full ls
  exec .venv/bin/python scripts/demo_loop.py "${1:-demo-out/loop}" "${@:2}"
fi
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
flight_id=$(.venv/bin/python -c "import json, sys; print(json.load(open(sys.argv[1]))['flight_id'])" \
  "$out/flight/flight.json")
.venv/bin/pli edge run --config "$out/device.json" --source "$out/flight/images" --flight-id "$flight_id" \
  --model models/pli-default-int8.onnx --outbox "$out/outbox/outbox.db"
.venv/bin/pli link status --config "$out/device.json" --outbox "$out/outbox/outbox.db" || true
# The cloud's database for the rest of the demo (SQLite; PLI_DATABASE_URL=postgresql+psycopg://... at scale).
here=$(cd "$out" && pwd)
export PLI_CLOUD_DIR="$here/cloud" PLI_DATABASE_URL="sqlite:///$here/cloud/pli.db"
rm -rf "$PLI_CLOUD_DIR" && mkdir -p "$PLI_CLOUD_DIR"
.venv/bin/pli -q cloud towers import "$out/flight/towers.csv"  # the line's towers: alerts get tower and span
.venv/bin/python scripts/demo_links.py "$out/outbox/outbox.db" "$out/device.json"
# After landing: the full-resolution photos and telemetry home through the API (resumable, checked
# by sha256; the alerts then point at their photos), then the crew's printable report.
port=$(.venv/bin/python -c "from comms.local_broker import free_port; print(free_port())")
.venv/bin/pli -q cloud serve --port "$port" > "$PLI_CLOUD_DIR/serve.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
PLI_TOKEN=$(.venv/bin/pli -q cloud token create --name demo-uav --role fleet --fleet fleet1) && export PLI_TOKEN
.venv/bin/python - "$port" <<'PY'
import sys, time, httpx
for _ in range(150):
    try:
        if httpx.get(f"http://127.0.0.1:{sys.argv[1]}/health").status_code == 200:
            break
    except httpx.HTTPError:
        time.sleep(0.2)
PY
.venv/bin/pli cloud upload "$out/flight" --config "$out/device.json" --url "http://127.0.0.1:$port"
# The flight log: its track on the flight's map, and clean passes over the faults it did not see.
.venv/bin/pli -q cloud flights track "$flight_id" "$out/flight/telemetry.csv" --drone UAV-01
# A signed model update (TUF): three offline root keys (two sign), online keys from files named in
# the environment; a release (here the shipped INT8 model re-released, with its golden frames) is
# recorded, signed for the canary group, and a canary drone's `pli edge run` takes it between frames.
keys="$here/keys"
mkdir -p "$keys"
for k in root-1 root-2 root-3 targets snapshot timestamp; do
  [ -s "$keys/$k.pem" ] || .venv/bin/pli -q cloud tuf keygen "$keys/$k.pem" > /dev/null
done
export PLI_TUF_TARGETS_KEY_FILE="$keys/targets.pem" PLI_TUF_SNAPSHOT_KEY_FILE="$keys/snapshot.pem" \
       PLI_TUF_TIMESTAMP_KEY_FILE="$keys/timestamp.pem"
.venv/bin/pli -q cloud tuf init --root-key "$keys/root-1.pem" --root-key "$keys/root-2.pem" \
  --root-key "$keys/root-3.pub.json"
release="2026.12.01-demo"
rel="$here/release"
rm -rf "$rel" && mkdir -p "$rel"
cp models/pli-default-int8.onnx "$rel/pli-next-int8.onnx"
.venv/bin/python - "$rel/pli-next-int8.onnx" "$release" <<'PY'
import hashlib, json, sys
from pathlib import Path
model, version = Path(sys.argv[1]), sys.argv[2]
card = json.loads(Path("models/pli-default-int8.json").read_text())
card.update(version=version, file=model.name, sha256=hashlib.sha256(model.read_bytes()).hexdigest())
model.with_suffix(".json").write_text(json.dumps(card, indent=1))
PY
.venv/bin/pli edge golden "$rel/pli-next-int8.onnx" $(ls "$out"/flight/images/*.jpg | head -6) --card
shipped=$(.venv/bin/python -c 'import json; print(json.load(open("models/pli-default.json"))["version"])')
.venv/bin/pli -q cloud release add "$release" "$rel"/* --parent "$shipped"
.venv/bin/pli -q cloud release promote "$release" --group canary
[ -s "$out/canary.key" ] || (umask 077 && .venv/bin/python -c "import os; print(os.urandom(32).hex())" > "$out/canary.key")
.venv/bin/pli device init --drone-id UAV-02 --key-id 2 --ground-address 0179773 --key-file "$out/canary.key" \
  --group canary --update-url "http://127.0.0.1:$port" --tuf-root "$PLI_CLOUD_DIR/tuf/metadata/1.root.json" \
  --out "$out/canary/device.json"
.venv/bin/pli edge run --config "$out/canary/device.json" --source "$out/flight/images" --flight-id "$flight_id-c" \
  --model models/pli-default-int8.onnx --outbox "$out/canary/outbox.db"
echo "the canary drone reports (tuf/status.json, published by pli link run): $(cat "$out/canary/tuf/status.json")"
.venv/bin/pli -q cloud release show "$release" > "$here/release-$release.json"
echo "release $release, as the registry shows it: $here/release-$release.json"
kill $server
.venv/bin/pli -q cloud report "$flight_id" --out "$out/report-$flight_id.pdf"
echo "To look at it in the browser: pli cloud operator add <name>; pli cloud serve; open http://127.0.0.1:8000/ui/"
echo "(with PLI_DATABASE_URL=$PLI_DATABASE_URL PLI_CLOUD_DIR=$PLI_CLOUD_DIR)"
