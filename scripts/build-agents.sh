#!/usr/bin/env bash
# Builds the custom agent modules (wasm32-unknown-unknown, release) into target/agents/:
#   examples/agents/{word-stats,keywords}  the two example agents
#   tests/agents/faulty                    misbehaves on request, for the supervisor's tests
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --target wasm32-unknown-unknown -p word-stats -p keywords -p faulty-agent
mkdir -p target/agents
for name in word_stats keywords faulty_agent; do
  cp "target/wasm32-unknown-unknown/release/$name.wasm" target/agents/
done
echo "agents: $(ls target/agents | tr '\n' ' ')"
