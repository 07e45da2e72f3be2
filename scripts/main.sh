#!/usr/bin/env bash
# The main job: set up ./.venv, then train CLIP on real emoji image-text pairs (CPU, < 15 min).
# The emoji data (npm packages openmoji, emoji-datasource-google) is fetched into the user cache on
# first use; extra arguments go to `cl train` (e.g. --set trainer.epochs=2).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-env.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=1
cl train specs/clip-emoji.toml "$@"
