#!/usr/bin/env bash
# A local Python base image for the Dockerfile, for machines that reach no image registry:
# Debian bookworm from debootstrap (minbase + python3, python3-venv, ca-certificates), a
# venv at /opt/venv first on PATH (so `python` and `pip` are the venv's, as in the official
# image), and this machine's CA bundle and pip settings, so that `pip install` in the build
# reaches the package index the way the host does.
#
#   bash scripts/build-base-image.sh [TAG]      # default TAG: banditloop-base:bookworm
#
# The root file system is cached as a tarball (BANDITLOOP_IMAGE_CACHE, default
# /var/cache/banditloop), so later runs on the same machine only `docker import` it.
set -euo pipefail

TAG="${1:-banditloop-base:bookworm}"
DOCKER="${DOCKER:-/usr/bin/docker}"
# Bump when the recipe below changes, so an old tarball is not reused.
RECIPE=1
CACHE="${BANDITLOOP_IMAGE_CACHE:-/var/cache/banditloop}"
TARBALL="$CACHE/base-bookworm-r$RECIPE.tar"

if "$DOCKER" image inspect "$TAG" >/dev/null 2>&1 &&
  [ "$("$DOCKER" image inspect -f '{{index .Config.Labels "banditloop.base.recipe"}}' "$TAG" 2>/dev/null)" = "$RECIPE" ]; then
  exit 0
fi

mkdir -p "$CACHE"
# Two test runs on one machine may get here at once: one builds, the other waits.
exec 9>"$CACHE/base.lock"
flock 9

if [ ! -s "$TARBALL" ]; then
  ROOT="$(mktemp -d "$CACHE/rootfs.XXXXXX")"
  # debootstrap unmounts what it mounted in ROOT; never delete through a mount left behind.
  trap 'grep -qF " $ROOT/" /proc/mounts || rm -rf "$ROOT"' EXIT
  started=$(date +%s)
  echo "building the base root file system with debootstrap (a few minutes, once)" >&2
  for attempt in 1 2 3; do # a mirror hiccup should not fail the run
    if debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
      bookworm "$ROOT" >"$CACHE/debootstrap.log" 2>&1; then
      break
    fi
    if [ "$attempt" -eq 3 ]; then
      tail -n 30 "$CACHE/debootstrap.log" >&2
      exit 1
    fi
    rm -rf "$ROOT" && mkdir -p "$ROOT"
    sleep $((attempt * 5))
  done
  chroot "$ROOT" /usr/bin/python3 -m venv /opt/venv
  cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/ca-certificates.crt"
  for conf in /etc/pip.conf /etc/xdg/pip; do
    if [ -e "$conf" ]; then
      mkdir -p "$ROOT$(dirname "$conf")"
      cp -a "$conf" "$ROOT$conf"
    fi
  done
  rm -rf "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/lib/apt/lists/*
  tar -C "$ROOT" -cf "$TARBALL.tmp" .
  mv "$TARBALL.tmp" "$TARBALL"
  echo "base root file system: $(du -h "$TARBALL" | cut -f1) in $(($(date +%s) - started)) s" >&2
fi

"$DOCKER" import \
  --change 'ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
  --change "LABEL banditloop.base.recipe=$RECIPE" \
  --change 'CMD ["python3"]' \
  "$TARBALL" "$TAG" >/dev/null
echo "imported $TAG" >&2
