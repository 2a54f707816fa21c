"""The vendored CRDs (ci/crds/, refreshed by ci/refresh_crds.py) as strict JSON schemas: kubectl's strict field
validation, for rendered custom resources, without a cluster."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import yaml

from .conftest import ROOT

CRDS = ROOT / "ci" / "crds"
CRD_FILES = {
    ("serving.kserve.io/v1beta1", "InferenceService"): "kserve-v0.20.0-inferenceservices.yaml",
    ("serving.kserve.io/v1alpha1", "ServingRuntime"): "kserve-v0.20.0-servingruntimes.yaml",
    ("serving.kserve.io/v1alpha1", "ClusterServingRuntime"): "kserve-v0.20.0-clusterservingruntimes.yaml",
    ("serving.kserve.io/v1alpha1", "ClusterStorageContainer"): "kserve-v0.20.0-clusterstoragecontainers.yaml",
    ("networking.istio.io/v1", "VirtualService"): "istio-v1.30.3-virtualservices.yaml",
    # A JSON schema of the kind (no package ships prometheus-operator's CRD YAML: ci/crds/README.md).
    ("monitoring.coreos.com/v1", "PodMonitor"): "prometheus-operator-v0.80.1-podmonitors.schema.json",
}


def strict(schema: Any) -> Any:
    """Add additionalProperties: false to every object schema with properties that does not preserve
    unknown fields: kubectl's strict field validation, as a JSON schema."""
    if isinstance(schema, dict):
        schema = {k: strict(v) for k, v in schema.items()}
        if (
            "properties" in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
            and "additionalProperties" not in schema
        ):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    return schema


@cache
def crd_schema(api_version: str, kind: str) -> dict[str, Any]:
    group, version = api_version.split("/")
    path = CRDS / CRD_FILES[(api_version, kind)]
    if path.suffix == ".json":
        return strict(json.loads(path.read_text()))
    for doc in yaml.safe_load_all((CRDS / CRD_FILES[(api_version, kind)]).read_text()):
        if doc and doc.get("kind") == "CustomResourceDefinition" and doc["spec"]["group"] == group:
            for entry in doc["spec"]["versions"]:
                if entry["name"] == version:
                    schema = strict(entry["schema"]["openAPIV3Schema"])
                    # Every object has these, whether or not a CRD's schema spells them out.
                    for field, kind_ in (("apiVersion", "string"), ("kind", "string"), ("metadata", "object")):
                        schema["properties"].setdefault(field, {"type": kind_})
                    return schema
    raise AssertionError(f"no schema for {api_version} {kind}")
