#!/usr/bin/env bash
# Renders the app's PNG icons (for the web manifest) from app/pwa/icons/icon.svg with headless
# Chromium. The PNGs are checked in; run this after changing the SVG.
set -euo pipefail
icons="$(cd "$(dirname "${BASH_SOURCE[0]}")/../app/pwa/icons" && pwd)"
page="$(mktemp --suffix=.html)"
trap 'rm -f "$page"' EXIT
for size in 192 512; do
  echo "<html><body style='margin:0'><img src='file://$icons/icon.svg' width=$size height=$size></body></html>" > "$page"
  chromium --headless=new --no-sandbox --disable-gpu --hide-scrollbars --default-background-color=00000000 \
    --window-size=$size,$size --screenshot="$icons/icon-$size.png" "file://$page" 2>/dev/null
done
