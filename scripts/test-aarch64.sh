#!/usr/bin/env bash
# The CPU kernels on ARM, which this x86 machine cannot run natively: cross-compiled to
# aarch64-unknown-linux-gnu and run under qemu-aarch64 (user mode; its default CPU has NEON
# and `dotprod`, so the NEON kernels run): the kernel tests, checking every kernel level the
# emulated CPU has bit for bit against the portable reference, and the default model's greedy
# golden test against llama.cpp. GPU tests are left out: there is no aarch64 Vulkan driver here.
# Installs its own cross toolchain; prints cargo's "test result:" lines for scripts/test.sh.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source scripts/toolchain.env
bash scripts/apt-install.sh gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
target=aarch64-unknown-linux-gnu
rustup target list --toolchain "$STABLE" --installed | grep -q "^$target$" \
  || rustup target add "$target" --toolchain "$STABLE"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
cargo clippy --profile ci --tests -p hearth-kernels --target "$target" -- -D warnings
cargo test --profile ci -p hearth-kernels --lib --target "$target" -- cpu:: quant::
cargo test --profile ci -p hearth-core --test llama_golden --target "$target" -- greedy_tokens_and_logits_match_llama_cpp
