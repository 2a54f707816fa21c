#!/usr/bin/env bash
# Build, push, describe and sign a release (`make release` calls this):
#   make release REGISTRY=ghcr.io/mlflow-kserve VERSION=0.2.0 [PYTHON_VERSIONS="3.10 3.11 3.12 3.13"]
#                [PLATFORMS="linux/amd64 linux/arm64"]
# For each Python minor: the init and server images for each platform the engine can build, pushed as one
# manifest list per tag:  $REGISTRY/mlflow-kserve-init:$VERSION-py<minor>, $REGISTRY/mlflow-kserve-server:…
# Then the chart, with version = appVersion = VERSION and its default image repositories under $REGISTRY (so its
# default tags `<appVersion>-py<pythonVersion>` are exactly those images), pushed to
# oci://$REGISTRY/charts/mlflow-kserve. A CycloneDX SBOM of each image's Python packages (cyclonedx-py, run
# against the image's own interpreter) lands in $RELEASE_OUT (default dist/release/$VERSION).
# Signing: with cosign and a GitHub Actions OIDC token (the release workflow), keyless; otherwise skipped with
# the reason printed.
# Registries on the loopback (127.0.0.0/8, localhost, [::1]) are spoken to over plain HTTP; any other only over
# verified TLS. A minor or platform that cannot be built here is skipped with the reason; RELEASE_REQUIRE_ALL=1
# (the release workflow) turns any skip into an error; nothing built at all is always an error. Nothing is
# pushed before every image is built and the packaged chart renders them.
set -euo pipefail
cd "$(dirname "$0")/.."
export CONTAINERS_CONF="$PWD/ci/containers.conf"
REGISTRY=${REGISTRY:-}
VERSION=${VERSION:-}
PYTHON_VERSIONS=${PYTHON_VERSIONS:-3.10 3.11 3.12 3.13}
PLATFORMS=${PLATFORMS:-linux/amd64 linux/arm64}
OUT=${RELEASE_OUT:-dist/release/$VERSION}
HELM=.tools/bin/helm
SBOM_TOOL="cyclonedx-bom==7.5.0"
start=$SECONDS

fail() { echo "release: $*" >&2; exit 2; }
[[ $REGISTRY != *://* ]] || fail "REGISTRY='$REGISTRY' has a scheme: give the registry path alone (ghcr.io/owner)"
[[ $REGISTRY != *[A-Z]* ]] || fail "REGISTRY='$REGISTRY' has upper case: OCI repository names are lower case"
[[ $REGISTRY =~ ^[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9._-]+)*$ ]] \
  || fail "REGISTRY='$REGISTRY' is not a registry path like ghcr.io/mlflow-kserve or 127.0.0.1:5000/mlflow-kserve"
[[ $VERSION =~ ^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]] \
  || fail "VERSION='$VERSION' is not a SemVer version like 0.2.0 or 0.2.0-rc.1 (no leading v, no +build)"
for minor in $PYTHON_VERSIONS; do
  [[ $minor =~ ^3\.[0-9]+$ ]] || fail "PYTHON_VERSIONS: '$minor' is not a Python minor like 3.11"
done
for platform in $PLATFORMS; do
  [[ $platform =~ ^linux/(amd64|arm64)$ ]] || fail "PLATFORMS: '$platform' is not linux/amd64 or linux/arm64"
done
[ -x "$HELM" ] || bash ci/install-tools.sh >/dev/null
UV=$(command -v .venv/bin/uv uv | head -1) || fail "uv not found: run make setup (or pip install uv)"
command -v podman >/dev/null || fail "podman not found: bash ci/install-engine.sh (apt)"

host=${REGISTRY%%/*}
case "$host" in
  127.*|localhost|localhost:*|"[::1]"*) tls=(--tls-verify=false); plain=(--plain-http)
    echo "registry $host is on the loopback: plain HTTP" ;;
  *) tls=(--tls-verify=true); plain=() ;;
esac

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/ctx" && bash ci/build-context.sh "$work/ctx"
rm -rf "$OUT" && mkdir -p "$OUT"
native=linux/$(podman info --format '{{.Host.Arch}}')

# The base image $2 for the foreign platform $1, when this engine can run that platform's binaries and a registry
# has it: sets $from to its image ID, or $why. Pulling moves the name $2 to the foreign image; it is moved back to
# the native one ($native_base), which later builds and ci/e2e use.
foreign_base() {
  local arch=${1#linux/} qemu
  case "$arch" in arm64) qemu=aarch64 ;; amd64) qemu=x86_64 ;; esac
  if [ ! -e "/proc/sys/fs/binfmt_misc/qemu-$qemu" ]; then
    why="this ${native#linux/} machine cannot run $arch binaries (no binfmt handler qemu-$qemu: apt-get install qemu-user-static)"
    return 1
  fi
  if ! timeout 300 podman pull -q --platform "$1" "$2" >/dev/null 2>&1; then
    why="no $1 base image $2 (no registry reachable; ci/base-image.sh makes only the native one)"
    return 1
  fi
  from=$(podman image inspect --format '{{.Id}}' "$2")
  podman tag "$native_base" "$2"
}

# CycloneDX SBOM of the Python packages of image $1 ($2 platform), for the interpreter $3 (empty: the image's
# python3), written to $4; $5 (optional): the root component's pyproject.toml. The generator runs inside the
# image with the image's own Python, from a directory mounted read-only, and reads the interpreter's sys.path.
sbom() {
  local image=$1 platform=$2 python=$3 file=$4 pyproject=${5:-} arch=${2#linux/} tools
  tools="$work/sbom-tool-py$minor-$arch"
  if [ ! -d "$tools" ]; then
    local uv_platform=x86_64-manylinux_2_28
    [ "$arch" = arm64 ] && uv_platform=aarch64-manylinux_2_28
    "$UV" pip install -q --target "$tools" --python-version "$minor" --python-platform "$uv_platform" "$SBOM_TOOL"
  fi
  local mounts=(-v "$tools:/opt/sbom-tool:ro") args=()
  if [ -n "$pyproject" ]; then mounts+=(-v "$PWD/$pyproject:/opt/sbom-root/pyproject.toml:ro"); args=(--pyproject /opt/sbom-root/pyproject.toml); fi
  podman run --rm --network none --platform "$platform" --entrypoint python3 "${mounts[@]}" "$image" -I -c '
import runpy, shutil, sys
sys.path.insert(0, "/opt/sbom-tool")
python = sys.argv[1] or shutil.which("python3")
sys.argv = ["cyclonedx-py", "environment", "--output-format", "JSON", "--output-file", "-", *sys.argv[2:], python]
runpy.run_module("cyclonedx_py", run_name="__main__", alter_sys=True)
' "$python" "${args[@]}" > "$file"
}

skip() { skipped+=("$1"); echo "SKIPPED $1" >&2; }
ordered=()  # the native platform first: its build must not follow a foreign pull (see foreign_base)
for platform in $PLATFORMS; do
  if [ "$platform" = "$native" ]; then ordered=("$platform" ${ordered[@]+"${ordered[@]}"}); else ordered+=("$platform"); fi
done

built_minors=() skipped=() lists=()
for minor in $PYTHON_VERSIONS; do
  tag="$VERSION-py$minor"
  base="docker.io/library/python:$minor-slim"
  if ! reason=$(PYTHON_VERSION=$minor bash ci/base-image.sh 2>&1 >/dev/null); then
    skip "python $minor: ${reason##*$'\n'}"
    continue
  fi
  native_base=$(podman image inspect --format '{{.Id}}' "$base")
  for image in init server; do
    ref="$REGISTRY/mlflow-kserve-$image:$tag"
    if podman manifest exists "$ref" 2>/dev/null; then podman manifest rm "$ref" >/dev/null; fi
    if podman image exists "$ref" 2>/dev/null; then podman rmi "$ref" >/dev/null; fi
  done
  made=0
  for platform in "${ordered[@]}"; do
    from=""  # native: the Dockerfile's own base, so ci/e2e's build reuses these layers
    if [ "$platform" != "$native" ] && ! foreign_base "$platform" "$base"; then
      skip "python $minor $platform: $why"
      continue
    fi
    for image in init server; do
      ref="$REGISTRY/mlflow-kserve-$image:$tag"
      dockerfile=initcontainer/Dockerfile python=/opt/mlflow-kserve/bin/python pyproject=pyproject.toml
      [ "$image" = server ] && dockerfile=server-image/Dockerfile python="" pyproject=""
      t=$SECONDS  # --label too: a LABEL layer from the cache keeps the VERSION of the build that made it
      podman build -q --platform "$platform" --manifest "$ref" --iidfile "$work/iid" -f "$work/ctx/$dockerfile" \
        --build-arg PYTHON_VERSION="$minor" ${from:+--build-arg BASE_IMAGE="$from"} --build-arg VERSION="$VERSION" \
        --label org.opencontainers.image.version="$VERSION" "$work/ctx" >/dev/null
      sbom_file="$OUT/mlflow-kserve-$image-$tag.${platform#linux/}.cdx.json"
      sbom "$(cat "$work/iid")" "$platform" "$python" "$sbom_file" "$pyproject"
      echo "built $ref ($platform) in $((SECONDS - t))s; SBOM $sbom_file"
    done
    made=1
  done
  [ "$made" = 1 ] || continue
  lists+=("$REGISTRY/mlflow-kserve-init:$tag" "$REGISTRY/mlflow-kserve-server:$tag")
  built_minors+=("$minor")
done

if [ ${#skipped[@]} -gt 0 ]; then
  echo "skipped (not built here):" >&2
  printf '  - %s\n' "${skipped[@]}" >&2
fi
[ ${#built_minors[@]} -gt 0 ] || { echo "release: no image could be built for PYTHON_VERSIONS='$PYTHON_VERSIONS'" >&2; exit 1; }
if [ "${RELEASE_REQUIRE_ALL:-0}" = 1 ] && [ ${#skipped[@]} -gt 0 ]; then
  echo "release: RELEASE_REQUIRE_ALL=1 and ${#skipped[@]} minor(s)/platform(s) were skipped: nothing pushed" >&2
  exit 1
fi

# The chart: version = appVersion = VERSION, default repositories under REGISTRY. Checked before any push: for
# every minor built, the packaged chart must render exactly the images about to be pushed.
mkdir -p "$work/chart"
cp -r charts/mlflow-kserve "$work/chart/"
sed -i "s#^\(    repository: \)ghcr.io/mlflow-kserve/\(mlflow-kserve-\(init\|server\)\)\$#\1$REGISTRY/\2#" \
  "$work/chart/mlflow-kserve/values.yaml"
"$HELM" package --version "$VERSION" --app-version "$VERSION" -d "$OUT" "$work/chart/mlflow-kserve" >/dev/null
chart="$OUT/mlflow-kserve-$VERSION.tgz"
selectable=()
for minor in "${built_minors[@]}"; do
  want=$(printf '%s\n' "$REGISTRY/mlflow-kserve-init:$VERSION-py$minor" "$REGISTRY/mlflow-kserve-server:$VERSION-py$minor")
  if ! rendered=$("$HELM" template release "$chart" --set model.uri=s3://bucket/model --set pythonVersion="$minor" 2>&1); then
    if grep -q pythonVersion <<<"$rendered"; then
      echo "warning: the chart refuses pythonVersion $minor (values.schema.json): its $minor images are pushed, but the chart cannot select them" >&2
      continue
    fi
    echo "$rendered" >&2; exit 1
  fi
  got=$(awk '$1 == "image:" {print $2}' <<<"$rendered" | sort -u)
  [ "$got" = "$want" ] || { echo "release: the packaged chart renders images"$'\n'"$got"$'\n'"not"$'\n'"$want" >&2; exit 1; }
  selectable+=("$minor")
done
echo "chart $chart renders the images of python ${selectable[*]:-(none)}"

: > "$OUT/digests.txt"
for ref in "${lists[@]}"; do
  podman manifest push -q --all "${tls[@]}" --digestfile "$work/digest" "$ref" "docker://$ref" >/dev/null
  echo "$ref@$(cat "$work/digest")" | tee -a "$OUT/digests.txt"
done
pushed=$("$HELM" push "$chart" "oci://$REGISTRY/charts" "${plain[@]}" 2>&1) || { echo "$pushed" >&2; exit 1; }
chart_digest=$(awk '/^Digest:/ {print $2}' <<<"$pushed")
echo "$REGISTRY/charts/mlflow-kserve:$VERSION@$chart_digest" | tee -a "$OUT/digests.txt"

if ! command -v cosign >/dev/null; then
  echo "not signed: cosign is not installed here (the release workflow installs it and signs keyless)"
elif [ -z "${ACTIONS_ID_TOKEN_REQUEST_URL:-}" ]; then
  echo "not signed: no OIDC identity for keyless signing (the release workflow has one: permissions id-token: write)"
else
  while read -r signed; do cosign sign --yes --recursive "$signed" >/dev/null; done < "$OUT/digests.txt"
  for file in "$OUT"/*.cdx.json; do
    name=$(basename "$file" .cdx.json)        # mlflow-kserve-init-<tag>.<arch>
    image=${name%%-"$VERSION"-py*} arch=${name##*.}
    ref="$REGISTRY/$image:${name#"$image"-}"; ref=${ref%."$arch"}
    digest=$(podman manifest inspect "$ref" | python3 -c '
import json, sys
print(next(m["digest"] for m in json.load(sys.stdin)["manifests"] if m["platform"]["architecture"] == sys.argv[1]))' "$arch")
    cosign attest --yes --type cyclonedx --predicate "$file" "$ref@$digest" >/dev/null
  done
  echo "signed every image and the chart, and attested each image's SBOM (cosign keyless)"
fi
echo "released $VERSION (python ${built_minors[*]}) to $REGISTRY in $((SECONDS - start))s; SBOMs and digests in $OUT"
