#!/usr/bin/env bash
# Every test: set up, build the app (both runtime builds), then
#   native: unit tests, launcher tests (real `hearth serve`), GPU kernels on lavapipe,
#           end-to-end tests driving the app in headless Chromium (both runtime builds) and in
#           headless Servo (WebGPU on lavapipe);
#   wasm:   the kernel tests again, on WebGPU inside a Chromium worker;
#   aarch64: the CPU kernel tests and a golden model test under qemu (scripts/test-aarch64.sh).
# Ends with one line "tests: N passed, N failed" summed over every test binary.
set -euo pipefail
# Each step's time goes to stderr, so a slow CI run shows where its minutes went.
done_step() { echo "test.sh: $1 done at $((SECONDS / 60)) min $((SECONDS % 60)) s" >&2; }
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
done_step setup
# Native code is built with the `ci` profile (Cargo.toml): release optimisation, no LTO.
bash scripts/build-app.sh ci
done_step build-app
bash scripts/build-agents.sh
# Medium-size test models (1B and 3B shapes, random weights) and their float64 reference's
# Python: written once into the cache, then reused (tests/tests/medium_models.rs).
bash scripts/medium-models.sh make > /dev/null
# hearth with Servo built in, for the headless Servo test: from the persistent cache, a few
# minutes; the very first build on a machine compiles Servo and SpiderMonkey (45 minutes to
# 2 hours on 2 cores).
bash scripts/build-servo.sh > /dev/null
done_step "models, agents, servo"
# `hearth open` is tested in a virtual X display, and its screen saved.
bash scripts/apt-install.sh xvfb x11-utils imagemagick
export PATH="$HOME/.cargo/bin:$PATH"
# Mesa's Vulkan loader looks for it; the tests need no display.
if [[ -z "${XDG_RUNTIME_DIR:-}" ]]; then export XDG_RUNTIME_DIR="$(mktemp -d)"; fi

# House style: formatted, and clippy-clean on every crate and both targets.
cargo fmt --all --check
cargo clippy --profile ci --tests -- -D warnings
cargo clippy --release --target wasm32-unknown-unknown -p hearth-app -p hearth-workers \
  -p hearth-agent-sdk -p word-stats -p keywords -p faulty-agent -- -D warnings
# And the threaded runtime's own code (agent workers, the rayon pool), on the nightly that
# scripts/build-runtime.sh builds it with.
(
  source scripts/toolchain.env
  RUSTFLAGS="-C target-feature=+atomics,+bulk-memory,+simd128" cargo +"$NIGHTLY" clippy -p hearth-workers \
    --features threads --target wasm32-unknown-unknown --release --target-dir target/clippy-threaded \
    -Z build-std=panic_abort,std -- -D warnings
)
done_step "fmt, clippy"

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
cargo test --profile ci --tests 2>&1 | tee -a "$log" || status=1
done_step "native tests"
# The runner's timeout is per test binary; building the GPU pipelines on SwiftShader is slow.
WASM_BINDGEN_TEST_TIMEOUT=900 RUSTFLAGS="-C target-feature=+simd128" cargo test --release --tests -p hearth-kernels \
  --target wasm32-unknown-unknown --target-dir target/wasm-single 2>&1 | tee -a "$log" || status=1
done_step "wasm kernel tests"
bash scripts/test-aarch64.sh 2>&1 | tee -a "$log" || status=1
done_step "aarch64 tests"

awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1) } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
