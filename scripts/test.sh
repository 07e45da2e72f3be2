#!/usr/bin/env bash
# The test suite: sets up ./.venv (see setup-env.sh) and runs pytest offline on CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-env.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=1 CL_STRICT_PLUGINS=1
python -m pytest -m "not gpu" "$@"
