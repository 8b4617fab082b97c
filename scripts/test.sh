#!/usr/bin/env bash
# Every test: set up, build the app (both runtime builds), then the native unit tests, the GPU
# kernel tests on lavapipe, and the end-to-end tests in headless Chromium.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
bash scripts/build-app.sh
# Mesa's Vulkan loader warns without it; the tests need no display.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
cargo test --release
