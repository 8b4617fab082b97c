#!/usr/bin/env bash
# Builds `hearth` with Servo embedded (cargo feature `servo`, profile `servo`) into a target
# directory in the cache, so it survives clean checkouts and the default build stays fast.
# The first build compiles SpiderMonkey from source and about 800 crates: about an hour on
# 2 cores. Later builds recompile only Hearth's crates (a few minutes).
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
  libfreetype-dev libx11-dev python3 m4 make pkg-config

cache="${HEARTH_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/hearth}"
target="$cache/servo-target"
bin="$target/servo/hearth"
if [[ ! -x "$bin" ]]; then
  say "no Servo build in $target yet: the first build takes about an hour on 2 cores"
fi
start=$SECONDS
# SpiderMonkey from source: its prebuilt archive would be a download at build time.
MOZJS_FROM_SOURCE=1 LIBCLANG_PATH=/usr/lib/llvm-19/lib CLANG_PATH=/usr/bin/clang-19 \
  CARGO_TARGET_DIR="$target" cargo build --profile servo -p hearth --features servo >&2
say "built in $((SECONDS - start)) s"
echo "$bin"
