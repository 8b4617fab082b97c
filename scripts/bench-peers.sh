#!/usr/bin/env bash
# Measures the peers Hearth is compared against, on the default model and bench/prompt.txt:
# native llama.cpp (llama-cpp-python, 1 thread) and wllama in headless Chromium (1 and 2
# threads). Prints one JSON object per peer run on stdout (an {"peer","error"} one where a peer
# cannot run); progress goes to stderr. `hearth bench` runs this and prints ratios.
# Usage: scripts/bench-peers.sh [--prompt-tokens N] [--gen-tokens M] [--only llama.cpp|wllama]
# Sets up what is missing into the Hearth cache (first run: several minutes, llama.cpp builds
# from source with native CPU optimisations), then reuses it.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
n_prompt=128 n_gen=128 only="" rounds=3 # 1 warm-up round, best of the other 2
while [[ $# -gt 0 ]]; do
  case "$1" in
    --prompt-tokens) n_prompt="$2"; shift 2 ;;
    --gen-tokens) n_gen="$2"; shift 2 ;;
    --only) only="$2"; shift 2 ;;
    *) echo "usage: $0 [--prompt-tokens N] [--gen-tokens M] [--only llama.cpp|wllama]" >&2; exit 2 ;;
  esac
done
# n_ctx is 512 in both peers and the prompt must fit one 512-token batch.
if ! [[ "$n_prompt" =~ ^[0-9]+$ && "$n_gen" =~ ^[0-9]+$ && n_prompt -ge 1 && n_gen -ge 1 && n_prompt+n_gen -le 512 ]]; then
  echo "bench-peers: need N >= 1, M >= 1, N + M <= 512" >&2; exit 2
fi
if [[ -n "${HEARTH_HOME:-}" ]]; then cache="$HEARTH_HOME"; else cache="${XDG_CACHE_HOME:-$HOME/.cache}/hearth"; fi
model="$cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"
prompt="$root/bench/prompt.txt"
ran=0

error() { # peer, reason: one JSON error line on stdout
  python3 -c 'import json,sys; print(json.dumps({"peer": sys.argv[1], "error": sys.argv[2]}, separators=(",", ":")))' "$1" "$2"
}

if [[ ! -f "$model" ]]; then
  bash "$root/scripts/fetch-model.sh" >&2 || { error llama.cpp "model missing: $model"; error wllama "model missing: $model"; exit 1; }
fi

# Anything else running on these 2 cores skews the numbers (wllama's 2-thread run most: its
# threads wait on each other at every op), so say how busy the machine is.
load="$(cut -d' ' -f1 /proc/loadavg)"
echo "bench-peers: load average $load on $(nproc) CPUs" >&2
if awk "BEGIN { exit !($load > 0.5) }"; then
  echo "bench-peers: WARNING: the machine is busy; the numbers will be low and noisy" >&2
fi

run_llama() {
  local venv="$cache/llama-venv"
  if ! "$venv/bin/python" -c 'import llama_cpp, numpy' 2>/dev/null; then
    # Built from source (the PyPI package is an sdist) with GGML_NATIVE=ON (llama.cpp's default,
    # spelled out): -march=native kernels for this CPU, the fastest native llama.cpp here.
    echo "bench-peers: building llama-cpp-python 0.3.36 into $venv (several minutes)" >&2
    { python3 -m venv "$venv" && CMAKE_ARGS="-DGGML_NATIVE=ON" CMAKE_BUILD_PARALLEL_LEVEL=2 \
        "$venv/bin/pip" install --no-cache-dir --no-binary llama-cpp-python llama-cpp-python==0.3.36; } >&2 \
      || { error llama.cpp "could not build llama-cpp-python 0.3.36 into $venv (see stderr)"; return; }
  fi
  echo "bench-peers: running llama.cpp" >&2
  local out
  if out="$("$venv/bin/python" "$root/scripts/bench-peers/llama-bench.py" "$model" "$prompt" "$n_prompt" "$n_gen" "$rounds")"; then
    echo "$out"; ran=1
  else
    error llama.cpp "llama-bench.py failed (see stderr)"
  fi
}

run_wllama() {
  local dir="$cache/bench-peers"
  if [[ ! -x /usr/bin/chromium ]]; then error wllama "/usr/bin/chromium is missing (apt-get install chromium)"; return; fi
  if ! command -v node >/dev/null; then error wllama "node is missing"; return; fi
  # Pinned by the checked-in package-lock.json; reinstalled when that changes.
  if ! cmp -s "$root/scripts/bench-peers/package-lock.json" "$dir/package-lock.json" || [[ ! -d "$dir/node_modules" ]]; then
    echo "bench-peers: installing wllama and puppeteer-core into $dir" >&2
    { mkdir -p "$dir" && cp "$root"/scripts/bench-peers/package{,-lock}.json "$dir/" \
        && npm ci --prefix "$dir" --ignore-scripts --no-audit --no-fund; } >&2 \
      || { rm -f "$dir/package-lock.json"; error wllama "npm ci into $dir failed (see stderr)"; return; }
  fi
  echo "bench-peers: running wllama in headless Chromium" >&2
  # One JSON line per thread count (result or error); it exits non-zero when none ran.
  local out
  out="$(node "$root/scripts/bench-peers/wllama-bench.mjs" "$dir/node_modules" "$model" "$prompt" \
    "$n_prompt" "$n_gen" "$rounds" 1 2)" && ran=1
  if [[ -n "$out" ]]; then echo "$out"; else error wllama "wllama-bench.mjs failed (see stderr)"; fi
}

case "$only" in
  "") run_llama; run_wllama ;;
  llama.cpp) run_llama ;;
  wllama) run_wllama ;;
  *) echo "bench-peers: --only takes llama.cpp or wllama" >&2; exit 2 ;;
esac
[[ $ran == 1 ]]
