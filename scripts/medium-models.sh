#!/usr/bin/env bash
# Synthetic medium-size test models (Llama 3.2 1B/3B and Qwen2.5 1.5B shapes, random weights) and
# their float64 reference forward pass. No medium GGUF can be downloaded here, so they are
# generated (scripts/medium-models.py) into $cache/models/medium/, with the default model's
# tokenizer; cached, so rerunning `make` costs seconds. gguf and numpy go into their own venv
# under the Hearth cache.
#
#   medium-models.sh make [NAME...]              write the models that are missing; prints their paths
#   medium-models.sh reference MODEL TOKENS_JSON  float64 logits of MODEL (a path, or a name in
#                                                 models/medium) over the token ids (JSON)
#   medium-models.sh too-large PATH               a 405B-shaped Q4_0 file (~229 GB) that is only a
#                                                 header: its data is a sparse hole
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${HEARTH_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/hearth}"
venv="$cache/reference-venv"
if ! "$venv/bin/python" -c 'import gguf, numpy, importlib.metadata as m
assert m.version("gguf") == "0.19.0" and numpy.__version__ == "2.4.6"' 2>/dev/null; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check gguf==0.19.0 numpy==2.4.6 >&2
fi

case "${1:-}" in
  make | too-large)
    tokenizer="$cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"
    [[ -f "$tokenizer" ]] || bash "$root/scripts/fetch-model.sh" default >&2
    if [[ "$1" == make ]]; then
      shift
      "$venv/bin/python" "$root/scripts/medium-models.py" "$tokenizer" "$cache/models/medium" "$@"
    else
      [[ $# -eq 2 ]] || { echo "usage: $0 too-large PATH" >&2; exit 2; }
      "$venv/bin/python" "$root/scripts/medium-models.py" "$tokenizer" --too-large "$2"
    fi
    ;;
  reference)
    [[ $# -eq 3 ]] || { echo "usage: $0 reference MODEL.gguf TOKENS_JSON" >&2; exit 2; }
    model="$2"
    [[ -f "$model" || ! -f "$cache/models/medium/$model" ]] || model="$cache/models/medium/$model"
    "$venv/bin/python" "$root/scripts/reference-f64.py" "$model" "$3"
    ;;
  *)
    echo "usage: $0 make [NAME...] | reference MODEL.gguf TOKENS_JSON | too-large PATH" >&2
    exit 2
    ;;
esac
