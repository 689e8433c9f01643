#!/usr/bin/env bash
# Reproduces the pre-trained default's adapter (src/arcsub/models/pretrained/): the recipe,
# its data and its sizing are in scripts/pretrain_default.py (--help). The shipped adapter:
#   scripts/pretrain-default.sh --minutes 60 --device cpu --out runs/pretrain-default --pack
# Run again with the same --out to resume from the last checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python scripts/pretrain_default.py "$@"
