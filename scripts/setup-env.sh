#!/usr/bin/env bash
# Create (or reuse) ./.venv with a CPU build of PyTorch, cl-core and every first-party plugin (editable, with
# each one's test dependencies).
# GPU users: install a CUDA torch into the venv first (see README), this script keeps an existing torch.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
if ! python -c "import torch" 2>/dev/null; then
  # On a machine without a local CPU wheel, PyPI's Linux torch is the CUDA build; the CPU build is at
  # https://download.pytorch.org/whl/cpu (set PIP_EXTRA_INDEX_URL to use it).
  python -m pip install -q "torch==2.13.0"
fi
# Debian packages, installed when we are root with apt: espeak-ng (speech of the ImageBind job and its tests), and
# chromium with its driver (the browser tests of `cl serve`). Without them those tests are skipped.
missing=""
command -v espeak-ng >/dev/null 2>&1 || missing="$missing espeak-ng"
command -v chromedriver >/dev/null 2>&1 || missing="$missing chromium chromium-driver"
if [ -n "$missing" ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  # shellcheck disable=SC2086  # one word per package
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null) \
    || echo "warning: could not install$missing; the tests that need them will be skipped" >&2
fi
plugins=$(python - <<'PY'
import tomllib
index = tomllib.load(open("registry.toml", "rb"))["plugin"]
print(" ".join(f"-e {m['path']}[testing]" for m in index.values()))
PY
)
# shellcheck disable=SC2086
python -m pip install -q -e ".[testing]" $plugins
