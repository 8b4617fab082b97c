#!/usr/bin/env bash
# Builds `hearth` with Servo embedded (cargo feature `servo`, profile `servo`) into a target
# directory in the cache, so it survives clean checkouts and the default build stays fast.
# The first build compiles SpiderMonkey from source and about 800 crates: 45 minutes to 2 hours
# on 2 cores (47 minutes on a fresh machine, 111 niced beside other work). Later builds
# recompile only Hearth's crates (under a minute), or the patched Servo crates when a patch
# changes (about 6 minutes).
# Prints the path of the binary on its last line. Run scripts/build-app.sh first (the binary
# embeds dist/).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
say() { echo "build-servo: $*" >&2; }
export PATH="$HOME/.cargo/bin:$PATH"

# What Servo's build needs: clang 19 for bindgen and SpiderMonkey (Debian's default clang 14
# fails in bindgen), and the libraries its software rendering context links.
bash "$root/scripts/apt-install.sh" clang-19 libclang-19-dev libegl-dev libgl1-mesa-dev libfontconfig1-dev \
  libfreetype-dev libx11-dev python3 m4 make pkg-config patch

cache="${HEARTH_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/hearth}"
target="$cache/servo-target"
bin="$target/servo/hearth"
if [[ ! -x "$bin" ]]; then
  say "no Servo build in $target yet: the first build takes 45 minutes to 2 hours on 2 cores"
fi

# Hearth's patches to Servo (launcher/servo-patches/<crate>/*.patch) turn on shared memory:
# each patched crate is a copy of its registry source in the cache, patched once, and used
# through `[patch.crates-io]` for this build only. All or none: if one no longer applies, Servo
# is built as shipped, and the launcher says that its pages have no shared memory.
cargo fetch >&2
registry="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/ | head -n1)"
patched="$cache/servo-patched"
patch_config=()
shared_memory="patched"
for dir in "$root"/launcher/servo-patches/*/; do
  crate="$(basename "$dir")"
  version="$(awk -v n="$crate" '$0 == "name = \"" n "\"" { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)"
  source="$registry/$crate-$version"
  copy="$patched/$crate-$version"
  stamp="$(cat "$dir"/*.patch | sha256sum | cut -d' ' -f1)"
  if [[ "$(cat "$copy.stamp" 2>/dev/null)" != "$stamp" ]]; then
    rm -rf "$copy" "$copy.stamp"
    mkdir -p "$patched"
    cp -r "$source" "$copy"
    for p in "$dir"/*.patch; do
      if ! patch --quiet --forward -p1 -d "$copy" < "$p" >&2; then
        shared_memory="unpatched: $(basename "$p") no longer applies to $crate $version"
      fi
    done
    [[ "$shared_memory" == patched ]] && echo "$stamp" > "$copy.stamp"
  fi
  patch_config+=(--config "patch.crates-io.$crate.path=\"$copy\"")
done
if [[ "$shared_memory" != patched ]]; then
  say "$shared_memory; building Servo as shipped (no shared memory in its pages)"
  patch_config=()
fi

start=$SECONDS
# [patch] rewrites Cargo.lock; the checkout's lock file is put back afterwards.
cp Cargo.lock "$cache/Cargo.lock.before-servo"
trap 'cp "$cache/Cargo.lock.before-servo" "$root/Cargo.lock"' EXIT
# SpiderMonkey from source: its prebuilt archive would be a download at build time.
HEARTH_SERVO_SHARED_MEMORY="$shared_memory" MOZJS_FROM_SOURCE=1 \
  LIBCLANG_PATH=/usr/lib/llvm-19/lib CLANG_PATH=/usr/bin/clang-19 CARGO_TARGET_DIR="$target" \
  cargo build --profile servo -p hearth --features servo "${patch_config[@]}" >&2
say "built in $((SECONDS - start)) s"
echo "$bin"
