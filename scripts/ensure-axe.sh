#!/usr/bin/env bash
# Install axe-core (the accessibility engine the console's browser tests inject into each
# page) from the npm registry, pinned, into .cache/axe (gitignored). Offline afterwards.
set -euo pipefail
VERSION=4.10.3
DIR="$(cd "$(dirname "$0")/.." && pwd)/.cache/axe"
if [ -f "$DIR/node_modules/axe-core/axe.min.js" ] && grep -q "\"version\": \"$VERSION\"" "$DIR/node_modules/axe-core/package.json"; then
  exit 0
fi
if ! command -v npm >/dev/null; then
  bash "$(dirname "$0")/apt-install.sh" npm
fi
mkdir -p "$DIR"
npm install --silent --no-audit --no-fund --prefix "$DIR" "axe-core@$VERSION"
