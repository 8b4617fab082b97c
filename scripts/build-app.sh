#!/usr/bin/env bash
# Builds the app into dist/ with Trunk (whose pre-build hook builds both runtime builds),
# then the `hearth` binary that embeds it, with the cargo profile given (default release; the
# test command builds with `ci`).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export PATH="$HOME/.cargo/bin:$PATH"
trunk build --offline
cargo build --profile "${1:-release}" -p hearth
