#!/usr/bin/env bash
# Regenerates tests/golden/quants/ from llama.cpp's gguf-py (PyPI `gguf`, pinned) in its own
# venv under the Hearth cache. Not part of the test run: the fixtures are checked in.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${HEARTH_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/hearth}"
venv="$cache/gguf-venv"
if ! "$venv/bin/python" -c 'import gguf' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "gguf==0.19.0" "numpy==2.4.6"
fi
mkdir -p "$root/tests/golden/quants"
"$venv/bin/python" "$root/scripts/make-quant-goldens.py" "$root/tests/golden/quants/dequantize.json"
