#!/usr/bin/env bash
# Install Prometheus (Debian's package) for tests/service/test_dashboards.py when it is missing.
# The test runs its own prometheus on a free port, so the package must not leave a system
# service listening on :9090.
set -euo pipefail

if [ -x /usr/bin/prometheus ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "prometheus is missing and apt-get is not available: install Prometheus by hand" >&2
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

echo "prometheus is missing: installing Debian's package" >&2
for attempt in 1 2 3; do  # a mirror hiccup should not fail the test run
  if $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus; then
    break
  fi
  [ "$attempt" -eq 3 ] && exit 1
  sleep $((attempt * 5))
done

# Belt and braces: if a service started anyway, stop it and keep it from starting at boot.
if [ -d /run/systemd/system ]; then
  $SUDO systemctl disable --now prometheus.service >/dev/null 2>&1 || true
elif [ -x /etc/init.d/prometheus ]; then
  $SUDO /etc/init.d/prometheus stop >/dev/null 2>&1 || true
fi

/usr/bin/prometheus --version >/dev/null
