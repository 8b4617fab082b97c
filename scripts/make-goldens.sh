#!/usr/bin/env bash
# Regenerates tests/golden/ from llama.cpp. Not part of the test run: the fixtures are checked
# in. llama-cpp-python (PyPI) goes into its own venv under the Hearth cache.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/fetch-model.sh"
if [[ -n "${HEARTH_HOME:-}" ]]; then cache="$HEARTH_HOME"; else cache="${XDG_CACHE_HOME:-$HOME/.cache}/hearth"; fi
venv="$cache/llama-venv"
if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import llama_cpp' 2>/dev/null; then
  python3 -m venv "$venv"
  CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" "$venv/bin/pip" install --no-cache-dir llama-cpp-python==0.3.36 gguf==0.19.0
fi
"$venv/bin/python" "$root/scripts/make-goldens.py" \
  "$cache/models/SmolLM2-135M-Instruct.Q4_1.gguf" "$root/tests/golden/smollm2-135m-q4_1"
