#!/usr/bin/env bash
# Build the images' base for sites that cannot reach Docker Hub: Debian 12 (bookworm) with its
# Python 3.11, made with debootstrap from a Debian mirror and imported into the engine.
#
#   docker/base-image.sh [TAG]           default TAG: localhost/dec-base:python3.11-bookworm
#   ENGINE=docker docker/base-image.sh   (default: podman, else docker)
#   MIRROR=http://deb.debian.org/debian  the Debian mirror debootstrap reads
#
# Shaped like the official python:3.11-slim-bookworm where the Dockerfiles rely on it:
# `python` and `python3` on PATH (here /usr/local/bin links to Debian's /usr/bin/python3.11),
# the venv module with ensurepip, CA certificates, LANG=C.UTF-8, CMD python3. Pass the printed
# tag to the image build: `make images BASE_IMAGE=<tag>`. Needs root (debootstrap), and
# prints the tag on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."

TAG=${1:-localhost/dec-base:python3.11-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
ENGINE=${ENGINE:-$(command -v podman >/dev/null 2>&1 && echo podman || echo docker)}
[ "$ENGINE" = podman ] && source docker/podman-env.sh

command -v debootstrap >/dev/null 2>&1 || {
  echo "base-image: debootstrap is missing (apt-get install debootstrap)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "base-image: debootstrap needs root" >&2; exit 1; }

rootfs=$(mktemp -d "${TMPDIR:-/tmp}/dec-base.XXXXXX")
trap 'rm -rf "$rootfs"' EXIT

# minbase: essential packages and apt only. python3-venv brings ensurepip's wheels, which the
# Dockerfiles' `python -m venv` needs; no compiler: every locked package installs from a wheel,
# except kfp-server-api, a pure-Python sdist.
debootstrap --variant=minbase --include=python3.11,python3-venv,ca-certificates,tzdata \
  "$SUITE" "$rootfs" "$MIRROR" >&2

# The official image's names for the interpreter.
ln -sf /usr/bin/python3.11 "$rootfs/usr/local/bin/python"
ln -sf /usr/bin/python3.11 "$rootfs/usr/local/bin/python3"
ln -sf /usr/bin/python3.11 "$rootfs/usr/local/bin/python3.11"
# What an image does not need: apt's lists and caches, documentation, man pages.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
  "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* \
  "$rootfs"/usr/share/info/* "$rootfs"/var/log/*.log

tar -C "$rootfs" --numeric-owner -c . | "$ENGINE" import \
  --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  - "$TAG" >&2
"$ENGINE" run --rm "$TAG" python -c 'import sys, ssl, venv; assert sys.version_info[:2] == (3, 11)'
echo "$TAG"
