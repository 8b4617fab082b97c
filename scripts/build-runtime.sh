#!/usr/bin/env bash
# Builds the engine-worker runtime (hearth-workers) twice and runs wasm-bindgen on each:
#   target/runtime/threaded  nightly, -Z build-std, +atomics,+bulk-memory,+simd128, rayon pool
#   target/runtime/single    stable, +simd128, no shared memory
# Each build has its own target directory so neither invalidates the other's cache.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
source scripts/toolchain.env
profile="${HEARTH_PROFILE:-release}"
out="$root/target/runtime"
wasm="hearth_workers.wasm"

actual_nightly="$(rustc +"$NIGHTLY" --version)"
if [[ "$actual_nightly" != "$NIGHTLY_VERSION" ]]; then
  echo "build-runtime: warning: expected $NIGHTLY_VERSION, found $actual_nightly" >&2
fi

# Threaded. This nightly's wasm-ld no longer makes the memory shared by itself for +atomics, so
# ask for it, and export the TLS symbols wasm-bindgen's thread start-up needs. 4 GiB maximum:
# models need it, and a shared memory must declare its maximum.
threaded_flags=(
  -C target-feature=+atomics,+bulk-memory,+simd128
  -C link-arg=--shared-memory -C link-arg=--import-memory -C link-arg=--max-memory=4294967296
  -C link-arg=--export=__wasm_init_tls -C link-arg=--export=__tls_size
  -C link-arg=--export=__tls_align -C link-arg=--export=__tls_base
)
RUSTFLAGS="${threaded_flags[*]}" \
  cargo +"$NIGHTLY" build -p hearth-workers --features threads --target wasm32-unknown-unknown \
    --profile "$profile" --target-dir target/wasm-threaded -Z build-std=panic_abort,std
# Single-threaded.
RUSTFLAGS="-C target-feature=+simd128" \
  cargo +"$STABLE" build -p hearth-workers --target wasm32-unknown-unknown \
    --profile "$profile" --target-dir target/wasm-single

for build in threaded single; do
  rm -rf "${out:?}/$build"
  wasm-bindgen --target web --no-typescript --out-dir "$out/$build" \
    "target/wasm-$build/wasm32-unknown-unknown/$profile/$wasm"
done
echo "build-runtime: $out/{threaded,single}"
