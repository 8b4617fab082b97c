#!/usr/bin/env bash
# Regenerates tests/golden/ from llama.cpp. Not part of the test run: the fixtures are checked
# in. llama-cpp-python (PyPI) is built from source into its own venv under the Hearth cache,
# with llama.cpp's portable scalar CPU kernels only (no AVX/FMA/F16C, no llamafile sgemm,
# no FP contraction): that build computes the same bits on every machine, and Hearth's CPU
# kernels follow its arithmetic, so greedy tokens can be compared exactly.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/fetch-model.sh"
if [[ -n "${HEARTH_HOME:-}" ]]; then cache="$HEARTH_HOME"; else cache="${XDG_CACHE_HOME:-$HOME/.cache}/hearth"; fi
venv="$cache/llama-venv-generic"
if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import llama_cpp' 2>/dev/null; then
  python3 -m venv "$venv"
  generic="-DGGML_NATIVE=OFF -DGGML_AVX=OFF -DGGML_AVX2=OFF -DGGML_AVX512=OFF -DGGML_AVX_VNNI=OFF -DGGML_FMA=OFF"
  generic+=" -DGGML_F16C=OFF -DGGML_SSE42=OFF -DGGML_BMI2=OFF -DGGML_LLAMAFILE=OFF -DGGML_OPENMP=OFF"
  generic+=" -DCMAKE_C_FLAGS=-ffp-contract=off -DCMAKE_CXX_FLAGS=-ffp-contract=off"
  CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" CMAKE_ARGS="$generic" "$venv/bin/pip" install --no-cache-dir \
    --no-binary llama-cpp-python llama-cpp-python==0.3.36 gguf==0.19.0
fi
"$venv/bin/python" "$root/scripts/make-goldens.py" \
  "$cache/models/SmolLM2-135M-Instruct.Q4_1.gguf" "$root/tests/golden/smollm2-135m-q4_1"
"$venv/bin/python" "$root/scripts/make-goldens.py" \
  "$cache/models/gemma-3-270m-q4_k_m.gguf" "$root/tests/golden/gemma-3-270m-q4_k_m"
