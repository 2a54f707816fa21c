"""Serverless admission: the PodSpec KServe hands Knative (the per-model chart's predictor; the KServe-native
runtime's pod template) passes Knative knative-v1.21.1's masks and flag rules (tests/chart/knative.py, read from
ci/knative/) under exactly the feature flags the values confirm; what would need another flag is refused by the
chart, naming the flag."""

from __future__ import annotations

import copy
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from . import knative
from .conftest import CHART, ROOT, RUNTIME_CHART, RUNTIME_SCENARIOS, SCENARIOS, helm_template, render

sys.path.insert(0, str(ROOT / "ci"))
import kserve_pod

# knative.<value> -> the config-features key it confirms.
CONFIRMS = {
    "initContainersEnabled": "kubernetes.podspec-init-containers",
    "podSecurityContextEnabled": "kubernetes.podspec-securitycontext",
    "persistentVolumeClaimEnabled": "kubernetes.podspec-persistent-volume-claim",
    "persistentVolumeWriteEnabled": "kubernetes.podspec-persistent-volume-write",
    "nodeSelectorEnabled": "kubernetes.podspec-nodeselector",
    "tolerationsEnabled": "kubernetes.podspec-tolerations",
    "affinityEnabled": "kubernetes.podspec-affinity",
    "fieldRefEnabled": "kubernetes.podspec-fieldref",
}
SERVERLESS = [s for s in SCENARIOS if (yaml.safe_load(s.read_text()) or {}).get("deploymentMode") == "Serverless"]
FLAG_NAMED = re.compile(r"kubernetes\.(podspec|containerspec)-[a-z-]+|no Knative flag allows")


def _confirmed(knative_values: dict[str, bool]) -> dict[str, str]:
    return knative.flags({CONFIRMS[k]: "enabled" for k, on in knative_values.items() if on})


def _revision_spec(docs: list[dict[str, Any]]) -> dict[str, Any]:
    isvc = next(d for d in docs if d["kind"] == "InferenceService")
    return kserve_pod.custom_predictor_pod_spec(isvc)


def test_every_knative_value_confirms_a_real_flag_and_says_which() -> None:
    text = (CHART / "values.yaml").read_text()
    values = yaml.safe_load(text)["knative"]
    assert set(values) == set(CONFIRMS)
    _defaults, keys = knative.features()
    for value, flag in CONFIRMS.items():
        assert flag in keys, flag
        comment = text.split(f"  {value}:")[0].rsplit("# --", 1)[1]
        assert flag in comment, value


def test_there_are_serverless_scenarios_with_and_without_flags() -> None:
    assert len(SERVERLESS) >= 2
    confirmed = [sum(bool(v) for v in yaml.safe_load(s.read_text())["knative"].values()) for s in SERVERLESS]
    assert min(confirmed) == 1 and max(confirmed) > 3


@pytest.mark.parametrize("scenario", SERVERLESS, ids=lambda p: p.stem)
def test_every_serverless_scenario_passes_knative_admission(scenario: Path) -> None:
    values = yaml.safe_load(scenario.read_text())
    errors = knative.rejections(_revision_spec(render(scenario)), _confirmed(values["knative"]))
    assert errors == []


@pytest.mark.parametrize("confirm", ["init containers only", "every flag"])
def test_any_scenario_in_serverless_is_admitted_or_refused_naming_the_flag(confirm: str) -> None:
    """Every scenario, switched to Serverless: the chart either renders a pod Knative admits under the confirmed
    flags, or refuses with a message naming a Knative flag (or why none helps)."""
    flags = {k: confirm == "every flag" or k == "initContainersEnabled" for k in CONFIRMS}
    sets = ["deploymentMode=Serverless", *(f"knative.{k}={str(v).lower()}" for k, v in flags.items())]
    outcomes = {}
    for scenario in SCENARIOS:
        proc = helm_template(scenario, "helm", *(a for s in sets for a in ("--set", s)))
        if proc.returncode:
            assert FLAG_NAMED.search(proc.stderr), proc.stderr
            outcomes[scenario.stem] = "refused"
        else:
            docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
            assert knative.rejections(_revision_spec(docs), _confirmed(flags)) == [], scenario.name
            outcomes[scenario.stem] = "admitted"
    assert "admitted" in outcomes.values()
    if confirm == "init containers only":
        assert "refused" in outcomes.values(), outcomes


def test_the_admission_mirror_rejects_what_knative_rejects() -> None:
    """The checks can fail: each change below is something Knative rejects under its default flags."""
    spec = _revision_spec(render(SERVERLESS[0]))
    cfg = _confirmed({"initContainersEnabled": True})
    assert knative.rejections(spec, cfg) == []
    cases = {
        "kubernetes.podspec-nodeselector": lambda s: s.update(nodeSelector={"a": "b"}),
        "kubernetes.podspec-securitycontext": lambda s: s.update(securityContext={"runAsUser": 1000}),
        "kubernetes.podspec-fieldref": lambda s: s["initContainers"][0]["env"].append(
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}
        ),
        "kubernetes.podspec-persistent-volume-claim": lambda s: s["volumes"].append(
            {"name": "models", "persistentVolumeClaim": {"claimName": "c", "readOnly": True}}
        ),
        "kubernetes.podspec-init-containers": None,
        "automountServiceAccountToken": lambda s: s.update(automountServiceAccountToken=True),
        "more than one container port": lambda s: s["containers"][0]["ports"].append({"containerPort": 8081}),
        "reserved port": lambda s: s["containers"][0]["ports"][0].update(containerPort=8012),
    }
    for needle, change in cases.items():
        broken = copy.deepcopy(spec)
        flags = cfg if change else knative.flags()
        if change:
            change(broken)
        errors = knative.rejections(broken, flags)
        assert any(needle in e for e in errors), (needle, errors)


def test_a_writable_host_path_in_the_init_container_is_rejected_even_with_its_flag() -> None:
    """Why the chart refuses cache.type=hostPath in Serverless (k8s_validation.go:720-726)."""
    spec = _revision_spec(render(SERVERLESS[0]))
    spec["volumes"].append({"name": "cache", "hostPath": {"path": "/var/cache"}})
    spec["initContainers"][0]["volumeMounts"].append({"name": "cache", "mountPath": "/mnt/cache"})
    cfg = knative.flags(
        {"kubernetes.podspec-init-containers": "enabled", "kubernetes.podspec-volumes-hostpath": "enabled"}
    )
    assert any("should be readOnly" in e for e in knative.rejections(spec, cfg))


def _runtime_revision(scenario: Path, deployment_mode: str = "Serverless") -> dict[str, Any]:
    docs = render(scenario, chart=RUNTIME_CHART)
    csc = next(d for d in docs if d["kind"] == "ClusterStorageContainer")
    csr = next(d for d in docs if d["kind"] == "ClusterServingRuntime")
    isvc = yaml.safe_load((ROOT / "examples" / "kserve-native" / "inferenceservice.yaml").read_text())
    isvc["metadata"].update(namespace="models", annotations={"serving.kserve.io/deploymentMode": deployment_mode})
    isvc["spec"]["predictor"]["model"]["runtime"] = csr["metadata"]["name"]
    return kserve_pod.pod_template(isvc, [], [csr], [csc])


@pytest.mark.parametrize("scenario", RUNTIME_SCENARIOS, ids=lambda p: p.stem)
def test_kserve_native_mode_needs_no_knative_flag_but_its_cache_volume(scenario: Path) -> None:
    """The storage container is injected by KServe's pod webhook after Knative validated the revision: the
    revision holds only the runtime's container and volumes. Without a cache that passes Knative's defaults;
    a cache volume needs its flag (as NOTES.txt says), nothing else."""
    pod = _runtime_revision(scenario)
    assert "initContainers" not in pod["spec"]
    cache = yaml.safe_load(scenario.read_text()).get("cache") or {}
    needed = {}
    if cache.get("enabled") and cache.get("type", "hostPath") == "hostPath":
        needed = {"kubernetes.podspec-volumes-hostpath": "enabled"}
    elif cache.get("enabled"):
        needed = {"kubernetes.podspec-persistent-volume-claim": "enabled",
                  "kubernetes.podspec-persistent-volume-write": "enabled"}  # fmt: skip
    assert knative.rejections(pod["spec"], knative.flags(needed)) == []
    if needed:
        errors = knative.rejections(pod["spec"], knative.flags())
        assert errors and all(any(flag in e for flag in needed) for e in errors), errors


def test_the_pvc_scenario_is_among_the_runtime_scenarios() -> None:
    kinds = {(yaml.safe_load(s.read_text()).get("cache") or {}).get("type") for s in RUNTIME_SCENARIOS}
    assert {"hostPath", "existingPVC"} <= kinds
