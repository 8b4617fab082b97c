#!/usr/bin/env bash
# Runs every fuzz target (fuzz/, cargo-fuzz + libFuzzer on the pinned nightly) for a while.
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 60 seconds, every target)
# Crashes land in fuzz/artifacts/<target>/; turn each into a regression test beside the code.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/toolchain.env"
seconds="${1:-60}"
shift || true
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then targets=(gguf_reader tokenizer chat_template workflow bus); fi
export PATH="$HOME/.cargo/bin:$PATH"
bash "$root/scripts/fetch-model.sh" >&2
if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi
rustup toolchain list | grep -q "^$NIGHTLY" || rustup toolchain install "$NIGHTLY" --profile minimal

# Seeds: the start of a real header (the default model's first 64 KiB: its metadata up to the
# vocabulary; whole headers are 2 MiB and fuzz at a few runs a second), text to tokenize, real
# chat templates and the example workflows.
if [[ -n "${HEARTH_HOME:-}" ]]; then models="$HEARTH_HOME/models"; else models="${XDG_CACHE_HOME:-$HOME/.cache}/hearth/models"; fi
mkdir -p "$root/fuzz/corpus/gguf_reader" "$root/fuzz/corpus/tokenizer"
[[ -e "$root/fuzz/corpus/gguf_reader/model-head" ]] ||
  head -c 65536 "$models/SmolLM2-135M-Instruct.Q4_1.gguf" > "$root/fuzz/corpus/gguf_reader/model-head"
[[ -e "$root/fuzz/corpus/tokenizer/prompt" ]] || cp "$root/bench/prompt.txt" "$root/fuzz/corpus/tokenizer/prompt"
mkdir -p "$root/fuzz/corpus/chat_template" "$root/fuzz/corpus/workflow" "$root/fuzz/corpus/bus"
for f in "$root"/tests/golden/chat-templates/*.jinja; do
  [[ -e "$f" ]] && cp -n "$f" "$root/fuzz/corpus/chat_template/"
done
cp -n "$root"/examples/*.toml "$root/fuzz/corpus/workflow/"

cd "$root/fuzz"
for target in "${targets[@]}"; do
  echo "fuzz: $target for ${seconds}s" >&2
  cargo "+$NIGHTLY" fuzz run --release "$target" -- -max_total_time="$seconds" -rss_limit_mb=4096 -max_len=262144 \
    -print_final_stats=1
done
