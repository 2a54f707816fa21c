#!/usr/bin/env python3
"""Refresh the vendored upstream files from their tags (needs GitHub access; CI never runs it): the CRDs and
KServe's default objects in ci/crds/ (SOURCES), Knative's admission sources in ci/knative/ (KNATIVE_SOURCES).

Where no release file can be had, a JSON schema is generated from a PyPI package that models the CRD
(PYPI_SOURCES: needs PyPI access).

    python3 ci/refresh_crds.py            # download (or generate) every file
    python3 ci/refresh_crds.py --check    # exit 1 when a vendored file differs from upstream

To move to a new release, change the tag (and the file name) here and in the folder's README.md, then run it.
The tests find the files by the names below (tests/chart/crds.py, tests/chart/knative.py, ci/kserve_pod.py's
tests)."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from pathlib import Path

import yaml

CRDS = Path(__file__).resolve().parent / "crds"
KNATIVE = Path(__file__).resolve().parent / "knative"
RAW = "https://raw.githubusercontent.com/{repo}/{tag}/{path}"

# file -> (repository, tag, path in the repository, kind to keep when the upstream file holds several CRDs)
SOURCES: dict[str, tuple[str, str, str, str | None]] = {
    "kserve-v0.20.0-inferenceservices.yaml": (
        "kserve/kserve", "v0.20.0", "config/crd/full/serving.kserve.io_inferenceservices.yaml", None,
    ),
    "kserve-v0.20.0-servingruntimes.yaml": (
        "kserve/kserve", "v0.20.0", "config/crd/full/serving.kserve.io_servingruntimes.yaml", None,
    ),
    "kserve-v0.20.0-clusterservingruntimes.yaml": (
        "kserve/kserve", "v0.20.0", "config/crd/full/serving.kserve.io_clusterservingruntimes.yaml", None,
    ),
    "kserve-v0.20.0-clusterstoragecontainers.yaml": (
        "kserve/kserve", "v0.20.0",
        "config/crd/full/clusterstoragecontainer/serving.kserve.io_clusterstoragecontainers.yaml", None,
    ),
    "istio-v1.30.3-virtualservices.yaml": (
        "istio/api", "v1.30.3", "kubernetes/customresourcedefinitions.gen.yaml", "VirtualService",
    ),
    # KServe's own objects the KServe-native mode sits beside (ci/kserve_pod.py's tests).
    "kserve-v0.20.0-default-storagecontainer.yaml": (
        "kserve/kserve", "v0.20.0", "config/storagecontainers/default.yaml", None,
    ),
    "kserve-v0.20.0-kserve-mlserver.yaml": ("kserve/kserve", "v0.20.0", "config/runtimes/kserve-mlserver.yaml", None),
}  # fmt: skip
# Knative Serving's admission of a revision's PodSpec (tests/chart/knative.py): knative-v1.21.1 is
# knative.dev/serving v0.48.1, the version KServe v0.20.0's go.mod requires.
KNATIVE_SOURCES: dict[str, tuple[str, str, str, str | None]] = {
    "knative-v1.21.1-fieldmask.go": ("knative/serving", "knative-v1.21.1", "pkg/apis/serving/fieldmask.go", None),
    "knative-v1.21.1-features.go": ("knative/serving", "knative-v1.21.1", "pkg/apis/config/features.go", None),
    "knative-v1.21.1-k8s_validation.go": (
        "knative/serving", "knative-v1.21.1", "pkg/apis/serving/k8s_validation.go", None,
    ),
}  # fmt: skip

# file -> (PyPI requirement, "module:Model" whose pydantic JSON schema (by alias) is the kind's object schema).
# No package on PyPI or npm ships prometheus-operator's CRD YAML; cloudcoil's models are generated from the CRDs
# of the prometheus-operator release their version names (0.80.1.x: v0.80.1).
PYPI_SOURCES: dict[str, tuple[str, str]] = {
    "prometheus-operator-v0.80.1-podmonitors.schema.json": (
        "cloudcoil-models-prometheus-operator==0.80.1.0", "cloudcoil.models.prometheus_operator.v1:PodMonitor",
    ),
}  # fmt: skip


def generate(requirement: str, model: str) -> str:
    """The model's JSON schema, from a throwaway venv with ``requirement`` installed."""
    import subprocess
    import tempfile

    module, name = model.split(":")
    script = f"import json; from {module} import {name} as M; "
    script += "print(json.dumps(M.model_json_schema(by_alias=True), indent=1, sort_keys=True))"
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "venv", tmp], check=True)
        subprocess.run([f"{tmp}/bin/pip", "install", "-q", requirement], check=True)
        return subprocess.run([f"{tmp}/bin/python", "-c", script], check=True, capture_output=True, text=True).stdout


def download(repo: str, tag: str, path: str, kind: str | None) -> str:
    with urllib.request.urlopen(RAW.format(repo=repo, tag=tag, path=path), timeout=60) as response:
        text = response.read().decode()
    if kind is None:
        return text
    for doc in yaml.safe_load_all(text):
        if doc and doc.get("spec", {}).get("names", {}).get("kind") == kind:
            return yaml.safe_dump(doc, sort_keys=False)
    raise SystemExit(f"{repo}@{tag}:{path} has no CRD of kind {kind}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args()
    stale = 0
    for name, (requirement, model) in PYPI_SOURCES.items():
        text = generate(requirement, model)
        target = CRDS / name
        if args.check:
            if json.loads(text) != json.loads(target.read_text()):
                print(f"{name}: differs from {requirement} {model}")
                stale += 1
        else:
            target.write_text(text)
            print(f"{name} <- {requirement} {model}")
    for folder, sources in ((CRDS, SOURCES), (KNATIVE, KNATIVE_SOURCES)):
        for name, (repo, tag, path, kind) in sources.items():
            text = download(repo, tag, path, kind)
            target = folder / name
            if args.check:
                same = text == target.read_text() if name.endswith(".go") else (
                    list(yaml.safe_load_all(text)) == list(yaml.safe_load_all(target.read_text()))
                )  # fmt: skip
                if not same:
                    print(f"{name}: differs from {repo}@{tag}:{path}")
                    stale += 1
            else:
                target.write_text(text)
                print(f"{name} <- {repo}@{tag}:{path}")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
