#!/usr/bin/env bash
# Make the base image `python:<X.Y>-slim` available to the local container engine.
# With a reachable registry: pull it. Without one (this CI): debootstrap Debian bookworm with its python3
# (3.11) and import the tree as `python:3.11-slim`. The tarball is cached in .cache/ for reruns.
set -euo pipefail
cd "$(dirname "$0")/.."
ENGINE=${ENGINE:-podman}
PYTHON_VERSION=${PYTHON_VERSION:-3.11}
IMAGE="docker.io/library/python:${PYTHON_VERSION}-slim"

if $ENGINE image exists "$IMAGE" 2>/dev/null; then
  echo "base image $IMAGE present"; exit 0
fi
if timeout 20 $ENGINE pull -q "$IMAGE" >/dev/null 2>&1; then
  echo "pulled $IMAGE"; exit 0
fi
if [ "$PYTHON_VERSION" != "3.11" ]; then
  echo "no registry and bookworm's python3 is 3.11: cannot make python:${PYTHON_VERSION}-slim here" >&2; exit 1
fi
TARBALL=.cache/base/bookworm-python3.tar
if [ ! -s "$TARBALL" ]; then
  command -v debootstrap >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap; }
  root=$(mktemp -d)
  mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$root" \
    "${mirror:-http://deb.debian.org/debian}" > .cache/debootstrap.log 2>&1 \
    || { tail -20 .cache/debootstrap.log >&2; exit 1; }
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  mkdir -p "$(dirname "$TARBALL")"
  tar -C "$root" -cf "$TARBALL" .
  rm -rf "$root"
fi
$ENGINE import \
  --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  "$TARBALL" "$IMAGE" >/dev/null
echo "imported a debootstrapped bookworm as $IMAGE"
