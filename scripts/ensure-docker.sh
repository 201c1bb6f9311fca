#!/usr/bin/env bash
# A Docker engine for scripts/check-image.sh: Debian's docker.io (and debootstrap, which
# makes the local base image), and a daemon started with no bridge and no iptables rules,
# since builds and containers here run with --network host only.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"

if ! command -v dockerd >/dev/null 2>&1 || ! command -v debootstrap >/dev/null 2>&1; then
  echo "docker.io or debootstrap is missing: installing Debian's packages" >&2
  bash "$HERE/apt-install.sh" docker.io debootstrap
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
# Debian's docker CLI, not whatever else is first on PATH.
DOCKER=/usr/bin/docker
[ -x "$DOCKER" ] || DOCKER="$(command -v docker)"

if $SUDO "$DOCKER" info >/dev/null 2>&1; then
  exit 0
fi
echo "starting dockerd (--bridge=none --iptables=false)" >&2
LOG=/var/log/banditloop-dockerd.log
$SUDO sh -c "nohup dockerd --bridge=none --iptables=false --ip6tables=false >>$LOG 2>&1 &"
for _ in $(seq 1 60); do
  if $SUDO "$DOCKER" info >/dev/null 2>&1; then
    exit 0
  fi
  sleep 1
done
echo "dockerd did not answer within 60 s; its log:" >&2
tail -n 30 "$LOG" >&2 || true
exit 1
