#!/usr/bin/env bash
# Regenerates tests/golden/synthetic/logits.json: writes the tiny synthetic models
# (core-wasm/tests/common/synthetic.rs, every architecture × weight format) into a temporary
# directory with examples/synthetic_models.rs, and has llama.cpp evaluate each one. Not part of
# the test run: the fixture is checked in, and the tests generate the models again in memory.
# Uses the venv of scripts/make-goldens.sh (llama-cpp-python built with llama.cpp's portable
# scalar CPU kernels), which that script creates.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -n "${HEARTH_HOME:-}" ]]; then cache="$HEARTH_HOME"; else cache="${XDG_CACHE_HOME:-$HOME/.cache}/hearth"; fi
venv="$cache/llama-venv-generic"
if ! "$venv/bin/python" -c 'import llama_cpp' 2>/dev/null; then
  echo "no llama-cpp-python in $venv: run scripts/make-goldens.sh first, which builds it" >&2
  exit 1
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cargo run --release --manifest-path "$root/Cargo.toml" -p hearth-core --example synthetic_models -- "$tmp"
"$venv/bin/python" "$root/scripts/make-synthetic-goldens.py" "$tmp" "$root/tests/golden/synthetic/logits.json"
