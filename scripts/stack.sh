#!/usr/bin/env bash
# The deployment (docker-compose.yml) as processes on this machine, for where no Docker engine runs:
#   bash scripts/stack.sh init                 # secrets, broker users and TLS, BeiDou keys (deploy/secrets/)
#   bash scripts/stack.sh up [--only a,b] [--skip a,b] [--dir .stack]
#   bash scripts/stack.sh status | down
# The same commands, env files, secrets and health checks as the compose file (scripts/stack.py).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || bash scripts/setup.sh full edge cloud ls
exec .venv/bin/python scripts/stack.py "$@"
