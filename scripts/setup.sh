#!/usr/bin/env bash
# Set up this machine for the project, idempotently:
#   - system packages via apt-get (only when run as root and something is missing),
#   - .venv       : everything (training, cloud, dev) for the tests and the demo,
#   - .venv-edge  : only the `edge` extra (what a drone gets: no torch, no ultralytics),
#   - .venv-cloud : only the `cloud` extra (the API, ingest and pages: no torch),
#   - .venv-ls    : the Label Studio server (its own pins, constraints-ls.txt).
# Usage: scripts/setup.sh [full] [edge] [cloud] [ls]   (default: all four)
set -euo pipefail
cd "$(dirname "$0")/.."

# chromium + chromium-driver: the pages' browser test (Debian's browser, driven by selenium)
APT_PACKAGES=(libgl1 libglib2.0-0 mosquitto mosquitto-clients openssl postgresql chromium chromium-driver)
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
want=("${@:-full edge cloud ls}")
want=" ${want[*]} "

log() { printf '[setup] %s\n' "$*"; }

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  missing=()
  for p in "${APT_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  command -v npm >/dev/null || missing+=(npm)  # for the pages' front-end assets (below)
  if [ ${#missing[@]} -gt 0 ]; then
    log "apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
fi

# Reinstall only when what defines the environment changed.
fingerprint=$(cat pyproject.toml constraints.txt constraints-ls.txt scripts/setup.sh | sha256sum | cut -c1-16)

make_env() {  # dir, pip arguments...  ($CONSTRAINTS: the pins, default constraints.txt)
  local dir=$1; shift
  local stamp="$dir/.pli-setup-$fingerprint"
  if [ -f "$stamp" ]; then log "$dir up to date"; return; fi
  [ -x "$dir/bin/python" ] || { log "creating $dir"; "$PYTHON" -m venv "$dir"; }
  log "installing into $dir: $*"
  # (This machine's pip config names local wheel folders that may be absent: drop that noise.)
  "$dir/bin/python" -m pip install -q --disable-pip-version-check -c "${CONSTRAINTS:-constraints.txt}" "$@" 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; }
  rm -f "$dir"/.pli-setup-*
  touch "$stamp"
}

if [[ $want == *" full "* ]]; then
  # torch first, pinned, from this machine's disk: no other resolver may pick a different build.
  make_env .venv torch==2.14.1 torchvision==0.29.1 -e '.[learn,dev,bench]'
fi
if [[ $want == *" edge "* ]]; then
  make_env .venv-edge -e '.[edge]' pytest pytest-timeout hypothesis
fi
if [[ $want == *" cloud "* ]]; then
  make_env .venv-cloud -e '.[cloud]'
fi
if [[ $want == *" ls "* ]]; then
  # Label Studio's server pins its own numpy, OpenCV and SDK: a virtual environment of its own.
  CONSTRAINTS=constraints-ls.txt make_env .venv-ls label-studio==1.23.2 label-studio-sdk==2.1.2
fi

# Front-end assets for the operators' pages, from the npm registry, checked against a pinned hash.
LEAFLET_VERSION=1.9.4
LEAFLET_SHA256=84c65a256e50657896f54c33bd857b6849ebe94c817803be818bf32a3dde0b77
vendor=cloud/api/web/static/vendor/leaflet
if [ ! -f "$vendor/leaflet.js" ] || [ "$(cat "$vendor/.version" 2>/dev/null)" != "$LEAFLET_VERSION" ]; then
  log "bundling leaflet $LEAFLET_VERSION from the npm registry into $vendor"
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack "leaflet@$LEAFLET_VERSION" --silent >/dev/null)
  echo "$LEAFLET_SHA256  $tmp/leaflet-$LEAFLET_VERSION.tgz" | sha256sum -c --quiet
  tar -xzf "$tmp/leaflet-$LEAFLET_VERSION.tgz" -C "$tmp"
  rm -rf "$vendor" && mkdir -p "$vendor"
  cp -r "$tmp/package/dist/leaflet.js" "$tmp/package/dist/leaflet.css" "$tmp/package/dist/images" \
    "$tmp/package/LICENSE" "$vendor/"
  echo "$LEAFLET_VERSION" > "$vendor/.version"
  rm -rf "$tmp"
fi
