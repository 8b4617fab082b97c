#!/usr/bin/env bash
# Measures the peers Hearth is compared against, on the default model (or --model's GGUF file)
# and bench/prompt.txt: native llama.cpp built from source (llama-cpp-python, 1 thread), native
# llama.cpp through the prebuilt binaries of the npm package node-llama-cpp (CPU, 1 thread and
# every core; it picks the best CPU variant at run time, so it is the llama.cpp to beat), and
# wllama in headless Chromium (1 and 2 threads); --only picks one. Prints one JSON
# object per peer run on stdout (an {"peer","error"} one where a peer cannot run); progress goes
# to stderr. `hearth bench` runs this and prints ratios.
# Usage: scripts/bench-peers.sh [--prompt-tokens N] [--gen-tokens M] [--model PATH]
#                               [--only llama.cpp|wllama|llama.cpp-node]
# Sets up what is missing into the Hearth cache (first run: several minutes, llama.cpp builds
# from source with native CPU optimisations), then reuses it.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
n_prompt=128 n_gen=128 only="" model="" rounds=3 # 1 warm-up round, best of the other 2
usage="usage: $0 [--prompt-tokens N] [--gen-tokens M] [--model PATH] [--only llama.cpp|wllama|llama.cpp-node]"
while [[ $# -gt 0 ]]; do
  [[ $# -ge 2 ]] || { echo "$usage" >&2; exit 2; }
  case "$1" in
    --prompt-tokens) n_prompt="$2"; shift 2 ;;
    --gen-tokens) n_gen="$2"; shift 2 ;;
    --model) model="$2"; shift 2 ;;
    --only) only="$2"; shift 2 ;;
    *) echo "$usage" >&2; exit 2 ;;
  esac
done
llama_node_peer="llama.cpp (node-llama-cpp 3.22.1, CPU)" # the version package-lock.json pins
case "$only" in
  "") peers=(llama.cpp "$llama_node_peer" wllama) ;;
  llama.cpp|wllama) peers=("$only") ;;
  llama.cpp-node) peers=("$llama_node_peer") ;;
  *) echo "bench-peers: --only takes llama.cpp, wllama or llama.cpp-node" >&2; exit 2 ;;
esac
# n_ctx is 512 in both peers and the prompt must fit one 512-token batch.
if ! [[ "$n_prompt" =~ ^[0-9]+$ && "$n_gen" =~ ^[0-9]+$ && n_prompt -ge 1 && n_gen -ge 1 && n_prompt+n_gen -le 512 ]]; then
  echo "bench-peers: need N >= 1, M >= 1, N + M <= 512" >&2; exit 2
fi
if [[ -n "${HEARTH_HOME:-}" ]]; then cache="$HEARTH_HOME"; else cache="${XDG_CACHE_HOME:-$HOME/.cache}/hearth"; fi
default_model="$cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"
prompt="$root/bench/prompt.txt"
ran=0

error() { # peer, reason: one JSON error line on stdout
  python3 -c 'import json,sys; print(json.dumps({"peer": sys.argv[1], "error": sys.argv[2]}, separators=(",", ":")))' "$1" "$2"
}

if [[ -z "$model" ]]; then
  model="$default_model"
  [[ -f "$model" ]] || bash "$root/scripts/fetch-model.sh" >&2
fi
if [[ ! -f "$model" ]]; then
  for peer in "${peers[@]}"; do error "$peer" "model missing: $model"; done
  exit 1
fi
model="$(cd "$(dirname "$model")" && pwd)/$(basename "$model")" # absolute: wllama serves it by path
echo "bench-peers: model $model" >&2

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

npm_dir="$cache/bench-peers"
npm_peers() { # peer: installs scripts/bench-peers/package.json's packages into $npm_dir, or says why not
  if ! command -v node >/dev/null; then error "$1" "node is missing"; return 1; fi
  # Pinned by the checked-in package-lock.json; reinstalled when that changes. `npm install
  # --no-save` installs the lock's versions and leaves it as it is; not `npm ci`, which refuses
  # this lock: node-llama-cpp 3.22.1 lists optional binary packages for macOS, Windows and
  # riscv64 that the registry does not have at 3.22.1, so npm cannot record them in the lock and
  # `npm ci` then calls the lock out of sync ("Missing: @node-llama-cpp/mac-x64@ from lock file").
  # --ignore-scripts: node-llama-cpp's prebuilt binaries are those optional packages
  # (@node-llama-cpp/linux-x64, ...); its postinstall would only test them and, failing that,
  # download llama.cpp's source and build it.
  if ! cmp -s "$root/scripts/bench-peers/package-lock.json" "$npm_dir/package-lock.json" || [[ ! -d "$npm_dir/node_modules" ]]; then
    echo "bench-peers: installing wllama, puppeteer-core and node-llama-cpp into $npm_dir" >&2
    { mkdir -p "$npm_dir" && rm -f "$npm_dir/package-lock.json" \
        && cp "$root"/scripts/bench-peers/package{,-lock}.json "$npm_dir/" \
        && npm install --prefix "$npm_dir" --no-save --ignore-scripts --no-audit --no-fund \
        && cmp -s "$root/scripts/bench-peers/package-lock.json" "$npm_dir/package-lock.json"; } >&2 \
      || { rm -f "$npm_dir/package-lock.json"; error "$1" "npm install into $npm_dir failed (see stderr)"; return 1; }
  fi
}

run_wllama() {
  local dir="$npm_dir"
  if [[ ! -x /usr/bin/chromium ]]; then error wllama "/usr/bin/chromium is missing (apt-get install chromium)"; return; fi
  npm_peers wllama || return
  echo "bench-peers: running wllama in headless Chromium" >&2
  # One JSON line per thread count (result or error); it exits non-zero when none ran.
  local out
  out="$(node "$root/scripts/bench-peers/wllama-bench.mjs" "$dir/node_modules" "$model" "$prompt" \
    "$n_prompt" "$n_gen" "$rounds" 1 2)" && ran=1
  if [[ -n "$out" ]]; then echo "$out"; else error wllama "wllama-bench.mjs failed (see stderr)"; fi
}

run_llama_node() { # llama.cpp's prebuilt CPU binaries through node-llama-cpp, at 1 thread and every core
  npm_peers "$llama_node_peer" || return
  local threads out counts=(1)
  (( $(nproc) > 1 )) && counts+=("$(nproc)")
  for threads in "${counts[@]}"; do
    echo "bench-peers: running $llama_node_peer at $threads thread(s)" >&2
    if out="$(node "$root/scripts/bench-peers/llama-node-bench.mjs" "$npm_dir/node_modules" "$model" \
        "$n_prompt" "$n_gen" "$threads" "$rounds")"; then
      echo "$out"; ran=1
    else
      error "$llama_node_peer" "llama-node-bench.mjs at $threads thread(s) failed (see stderr)"
    fi
  done
}

case "$only" in
  "") run_llama; run_llama_node; run_wllama ;;
  llama.cpp) run_llama ;;
  wllama) run_wllama ;;
  llama.cpp-node) run_llama_node ;;
esac
[[ $ran == 1 ]]
