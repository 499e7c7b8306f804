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
APT_PACKAGES=(libgl1 libglib2.0-0 mosquitto mosquitto-clients openssl postgresql redis-server chromium chromium-driver)
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
  make_env .venv torch==2.14.1 torchvision==0.29.1 -e '.[learn,crawl,dev,bench]'
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

# Front-end assets for the operators' pages, from the npm registry, each checked against a pinned
# hash: nothing is fetched from a CDN when a page loads (the CSP allows only this site's scripts).
bundle() {  # NAME VERSION SHA256 FILE... (paths inside the package; copied into static/vendor/NAME)
  local name=$1 version=$2 sha=$3; shift 3
  local vendor=cloud/api/web/static/vendor/$name tmp
  if [ -f "$vendor/.version" ] && [ "$(cat "$vendor/.version")" = "$version" ]; then return; fi
  log "bundling $name $version from the npm registry into $vendor"
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack "$name@$version" --silent >/dev/null)
  echo "$sha  $tmp/$name-$version.tgz" | sha256sum -c --quiet
  tar -xzf "$tmp/$name-$version.tgz" -C "$tmp"
  rm -rf "$vendor" && mkdir -p "$vendor"
  for f in "$@"; do cp -r "$tmp/package/$f" "$vendor/"; done
  echo "$version" > "$vendor/.version"
  rm -rf "$tmp"
}
bundle leaflet 1.9.4 84c65a256e50657896f54c33bd857b6849ebe94c817803be818bf32a3dde0b77 \
  dist/leaflet.js dist/leaflet.css dist/images LICENSE
bundle swagger-ui-dist 5.31.0 aaa99e75e9195df28679e7de0471f9105ffca237ede301822a2f4cb0fe72b9e5 \
  swagger-ui-bundle.js swagger-ui.css favicon-32x32.png LICENSE
bundle redoc 2.5.2 b80462bec8e96d985086b1a23768f46f0776ed37c719b9a752fd443557282e03 \
  bundles/redoc.standalone.js LICENSE
# ReDoc's footer shows a logo from its CDN: an empty image instead (the pages ask nothing of another site)
redoc=cloud/api/web/static/vendor/redoc/redoc.standalone.js
if grep -q "https://cdn.redoc.ly/redoc/logo-mini.svg" "$redoc"; then
  sed -i "s#https://cdn.redoc.ly/redoc/logo-mini.svg#data:image/svg+xml,%3Csvg xmlns=%27http://www.w3.org/2000/svg%27/%3E#" "$redoc"
fi
