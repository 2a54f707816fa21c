#!/usr/bin/env bash
# Make the base image `python:<X.Y>-slim` available to the local container engine.
# With a reachable registry: pull it. Without one (this CI): debootstrap the Debian release whose python3 is that
# minor (bookworm: 3.11, trixie: 3.13) and import the tree as `python:<X.Y>-slim`. Its python3 lives in /usr/bin,
# not /usr/local/bin as in the official image; both images of a pair come from the same base, so the venv's
# interpreter path exists in both. The tarball is kept in .cache/base/ for reruns.
set -euo pipefail
cd "$(dirname "$0")/.."
ENGINE=${ENGINE:-podman}
PYTHON_VERSION=${PYTHON_VERSION:-3.11}
IMAGE="docker.io/library/python:${PYTHON_VERSION}-slim"
mkdir -p .cache/base
exec 9>".cache/base/.lock-${PYTHON_VERSION}"
flock 9  # one maker per minor: the release test and ci/e2e may ask at once (ci/test.sh runs them side by side)

if $ENGINE image exists "$IMAGE" 2>/dev/null; then
  echo "base image $IMAGE present"; exit 0
fi
if timeout 20 $ENGINE pull -q "$IMAGE" >/dev/null 2>&1; then
  echo "pulled $IMAGE"; exit 0
fi
case "$PYTHON_VERSION" in
  3.11) suite=bookworm ;;
  3.13) suite=trixie ;;
  *) echo "no registry, and no Debian release has python3 ${PYTHON_VERSION} (bookworm: 3.11, trixie: 3.13): cannot make $IMAGE here" >&2
     exit 1 ;;
esac
TARBALL=.cache/base/${suite}-python3.tar
LOG=.cache/base/debootstrap-${suite}.log
if [ ! -s "$TARBALL" ]; then
  command -v debootstrap >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap; }
  root=$(mktemp -d)
  trap 'rm -rf "$root"' EXIT
  mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  start=$SECONDS
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates "$suite" "$root" \
    "${mirror:-http://deb.debian.org/debian}" > "$LOG" 2>&1 \
    || { tail -20 "$LOG" >&2; exit 1; }
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" -cf "$TARBALL.tmp" . && mv "$TARBALL.tmp" "$TARBALL"
  echo "debootstrapped $suite in $((SECONDS - start))s"
fi
$ENGINE import \
  --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  "$TARBALL" "$IMAGE" >/dev/null
got=$($ENGINE run --rm "$IMAGE" python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [ "$got" != "$PYTHON_VERSION" ]; then
  echo "the $suite image's python3 is $got, not $PYTHON_VERSION" >&2; exit 1
fi
echo "imported a debootstrapped $suite (python3 $got) as $IMAGE"
