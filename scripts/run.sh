#!/usr/bin/env bash
# The main job: set up, build, and serve the app with the default model. Prints the URL.
# Extra arguments go to `hearth serve` (e.g. --port 9000 --open).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
bash "$root/scripts/build-app.sh"
exec "$root/target/release/hearth" serve "$@"
