#!/usr/bin/env bash
# Regenerates tests/golden/chat-templates/cases.json (and smollm2.jinja, the default model's
# template) with Python Jinja2 set up as llama-cpp-python's Jinja2ChatFormatter does. Not part of
# the test run: the fixtures are checked in. Jinja2 and gguf go into their own venv under the
# Hearth cache.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/fetch-model.sh"
if [[ -n "${HEARTH_HOME:-}" ]]; then cache="$HEARTH_HOME"; else cache="${XDG_CACHE_HOME:-$HOME/.cache}/hearth"; fi
venv="$cache/jinja-venv"
if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import jinja2, gguf' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check jinja2==3.1.6 gguf==0.19.0
fi
"$venv/bin/python" "$root/scripts/make-chat-goldens.py" \
  "$cache/models/SmolLM2-135M-Instruct.Q4_1.gguf" "$root/tests/golden/chat-templates"
