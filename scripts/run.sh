#!/usr/bin/env bash
# The main job: set up, build, and serve the app with the default model. Prints the URL.
# Extra arguments go to `hearth serve` (e.g. --port 9000 --open); `open` opens Hearth's window.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
bash "$root/scripts/build-app.sh"
# `scripts/run.sh open`: the app in Hearth's own window, drawn by the embedded Servo, which is
# built first when missing (the first build takes 45 minutes to 2 hours on 2 cores; later
# ones, minutes).
if [[ "${1:-}" == open ]]; then
  exec "$(bash "$root/scripts/build-servo.sh")" "$@"
fi
exec "$root/target/release/hearth" serve "$@"
