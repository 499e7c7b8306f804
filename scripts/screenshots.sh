#!/usr/bin/env bash
# The README's screenshots of the operators' pages: the Chromium tests that drive each page on
# generated data save them in test-artifacts/; this copies them into docs/screenshots/.
# Run by hand after a change to the pages (not by CI); needs the test setup (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m pytest -q -p no:cacheprovider tests/cloud/test_operator_pages.py
mkdir -p docs/screenshots
for name in alerts alert flight-map demo-flight-map towers releases; do
  cp "test-artifacts/$name.png" "docs/screenshots/$name.png"
done
echo "docs/screenshots: $(ls docs/screenshots | tr '\n' ' ')"
