#!/usr/bin/env bash
# Install Prometheus (Debian's package) for tests/service/test_dashboards.py when it is missing.
# The test runs its own prometheus on a free port, so the package must not leave a system
# service listening on :9090 (apt-install.sh keeps services from starting).
set -euo pipefail

if [ -x /usr/bin/prometheus ]; then
  exit 0
fi
echo "prometheus is missing: installing Debian's package" >&2
bash "$(dirname "$0")/apt-install.sh" prometheus

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
# Belt and braces: if a service started anyway, stop it and keep it from starting at boot.
if [ -d /run/systemd/system ]; then
  $SUDO systemctl disable --now prometheus.service >/dev/null 2>&1 || true
elif [ -x /etc/init.d/prometheus ]; then
  $SUDO /etc/init.d/prometheus stop >/dev/null 2>&1 || true
fi

/usr/bin/prometheus --version >/dev/null
