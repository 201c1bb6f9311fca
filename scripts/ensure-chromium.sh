#!/usr/bin/env bash
# Install Debian's chromium (the headless browser of the browser tests, such as
# tests/service/test_docs_offline.py) when it is missing. Playwright drives it through
# executable_path=/usr/bin/chromium: `playwright install` cannot download a browser here.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
echo "chromium is missing: installing Debian's package" >&2
bash "$(dirname "$0")/apt-install.sh" chromium fonts-liberation
/usr/bin/chromium --version >/dev/null
