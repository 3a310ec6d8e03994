#!/usr/bin/env bash
# Set up a virtual environment in .venv with headcls and everything its tests need. Safe to run again.
# torch comes first and pinned: with no torch installed, a looser requirement can pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[[ -x .venv/bin/python ]] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check "torch==${TORCH_VERSION:-2.13.0}"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -c requirements-lock.txt -e '.[dev]'
.venv/bin/headcls --help >/dev/null
echo "headcls is set up in .venv"
