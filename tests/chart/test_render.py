"""Every scenario renders, lints and validates against the real schemas: KServe's InferenceService CRD,
Istio's VirtualService CRD (strict: unknown fields are errors, as kubectl's field validation makes them) and
Kubernetes' own schemas (kubernetes-validate, strict, 1.29 and the newest)."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from .conftest import CHART, ROOT, SCENARIOS, render, tool, yamllint
from .crds import CRD_FILES, crd_schema

K8S_VERSIONS = ["1.29.0", latest_version()]


@pytest.mark.parametrize("helm", ["helm", "helm4"])
def test_helm_lint_strict(scenario: Path, helm: str) -> None:
    proc = subprocess.run([tool(helm), "lint", "--strict", CHART, "-f", scenario], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_helm4_renders_what_helm3_renders(scenario: Path) -> None:
    from .conftest import helm_template

    helm4, helm3 = helm_template(scenario, "helm4"), helm_template(scenario)
    assert helm4.returncode == 0, helm4.stderr
    assert list(yaml.safe_load_all(helm4.stdout)) == list(yaml.safe_load_all(helm3.stdout))


def test_custom_resources_match_their_crds(scenario: Path) -> None:
    docs = render(scenario)
    custom = [d for d in docs if (d["apiVersion"], d["kind"]) in CRD_FILES]
    assert any(d["kind"] == "InferenceService" for d in custom)
    for doc in custom:
        errors = sorted(
            jsonschema.Draft7Validator(crd_schema(doc["apiVersion"], doc["kind"])).iter_errors(doc), key=str
        )
        assert not errors, [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]


def test_strict_crd_schema_rejects_unknown_fields() -> None:
    doc = next(d for d in render(SCENARIOS[0]) if d["kind"] == "InferenceService")
    bad = copy.deepcopy(doc)
    bad["spec"]["predictor"]["containers"][0]["imagePullPolicyy"] = "Always"
    errors = list(jsonschema.Draft7Validator(crd_schema(doc["apiVersion"], doc["kind"])).iter_errors(bad))
    assert errors and "imagePullPolicyy" in errors[0].message


def predictor_as_pod(isvc: dict[str, Any]) -> dict[str, Any]:
    """The predictor is a PodSpec plus KServe's own fields: validate the PodSpec part with Kubernetes' schema."""
    kserve_only = {"minReplicas", "maxReplicas", "scaleMetric", "scaleTarget", "containerConcurrency", "timeout",
                   "canaryTrafficPercent", "autoScaling", "deploymentStrategy"}  # fmt: skip
    spec = {k: v for k, v in isvc["spec"]["predictor"].items() if k not in kserve_only}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "predictor"}, "spec": spec}


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_core_objects_match_kubernetes_schemas(scenario: Path, version: str) -> None:
    docs = render(scenario)
    core = [d for d in docs if (d["apiVersion"], d["kind"]) not in CRD_FILES]
    core += [predictor_as_pod(d) for d in docs if d["kind"] == "InferenceService"]
    for doc in core:
        kubernetes_validate.validate(doc, version, strict=True)


def test_yamllint_clean(scenario: Path, tmp_path: Path) -> None:
    from .conftest import helm_template

    out = tmp_path / "rendered.yaml"
    out.write_text(helm_template(scenario).stdout)
    proc = yamllint(out, CHART / "values.yaml", scenario)
    assert proc.returncode == 0, proc.stdout


def test_chart_yaml_passes_chart_testing_schema() -> None:
    import yamale

    schema = yamale.make_schema(str(ROOT / "ci" / "chart_schema.yaml"))
    yamale.validate(schema, yamale.make_data(str(CHART / "Chart.yaml")))


def test_values_schema_and_readme_are_generated_and_fresh() -> None:
    proc = subprocess.run(
        [Path(__import__("sys").executable), ROOT / "ci" / "gen_chart_docs.py", "--check"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr


# examples/helmfile.yaml pins registry aliases when it renders: tests/test_resolve.py renders it against the real
# registry.
