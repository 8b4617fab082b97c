#!/usr/bin/env bash
# Trunk's post-build hook: writes sw.js into the build, app/pwa/sw.js after the list of every
# file the build made (the app shell the service worker keeps) and a version hashed from their
# contents, so each build that changes a file is a new service worker.
set -euo pipefail
staging="${TRUNK_STAGING_DIR:?run by Trunk as a post-build hook}"
source_dir="${TRUNK_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
cd "$staging"
mapfile -t files < <(find . -type f ! -name sw.js -printf '%P\n' | LC_ALL=C sort)
version="$(sha256sum "${files[@]}" | sha256sum | cut -c1-16)"
{
  echo "// Written by scripts/pwa-shell.sh: this build's version and files."
  echo "const VERSION = '$version';"
  echo "const SHELL = ["
  echo "  './',"
  printf "  '%s',\n" "${files[@]}"
  echo "];"
  echo
  cat "$source_dir/app/pwa/sw.js"
} > sw.js
echo "pwa-shell: sw.js keeps ${#files[@]} files, version $version" >&2
