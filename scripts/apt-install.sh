#!/usr/bin/env bash
# Install Debian packages without letting them start system services, with retries.
#   bash scripts/apt-install.sh PACKAGE...
# The ensure-*.sh scripts call it only when what they need is missing. Another apt run on
# the machine holds the dpkg lock for a while: wait for it instead of failing.
set -euo pipefail

if [ "$#" -eq 0 ]; then
  echo "usage: $0 PACKAGE..." >&2
  exit 2
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "apt-get is not available: install $* by hand" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi

# invoke-rc.d asks policy-rc.d before starting a service; 101 means "not allowed".
# Keep any policy the machine already has and put it back afterwards.
POLICY=/usr/sbin/policy-rc.d
BACKUP=""
if [ -e "$POLICY" ]; then
  BACKUP="$(mktemp)"
  $SUDO cp -p "$POLICY" "$BACKUP"
fi
restore_policy() {
  if [ -n "$BACKUP" ]; then
    $SUDO mv -f "$BACKUP" "$POLICY"
  else
    $SUDO rm -f "$POLICY"
  fi
}
trap restore_policy EXIT
printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
$SUDO chmod 755 "$POLICY"

APT=(env DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=600)
# An apt run killed halfway (a cancelled test run, a lost session) leaves dpkg "interrupted",
# and apt-get then refuses every install until the half-configured packages are finished.
$SUDO env DEBIAN_FRONTEND=noninteractive dpkg --configure -a || true
for attempt in 1 2 3; do # a mirror hiccup should not fail the test run
  if $SUDO "${APT[@]}" update &&
    $SUDO "${APT[@]}" install -y --no-install-recommends "$@"; then
    exit 0
  fi
  [ "$attempt" -eq 3 ] && exit 1
  sleep $((attempt * 5))
done
