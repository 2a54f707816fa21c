"""The predictor pod of a rendered InferenceService (or the pod ci/kserve_pod.py builds for the KServe-native mode),
and the chart's `helm test` Pod, as Pods a local engine (podman kube play) runs.

Both are used as rendered. LOCAL_CHANGES lists the only changes, each with its reason; tests/test_e2e_pod.py
fails when either pod differs from what helm rendered anywhere else.
"""

from __future__ import annotations

import copy
import re
from typing import Any

# KServe-only predictor fields (autoscaling/rollout, read by KServe's controller, not part of a PodSpec).
KSERVE_FIELDS = ("minReplicas", "maxReplicas", "scaleMetric", "scaleTarget", "containerConcurrency", "timeout",
                 "canaryTrafficPercent", "autoScaling", "deploymentStrategy")  # fmt: skip

# (path, reason): every difference between a rendered pod (the predictor; the `helm test` Pod) and the local one.
LOCAL_CHANGES: list[tuple[str, str]] = [
    ("spec.restartPolicy", "Never: a failed init container must end the run, not restart forever (KServe: Always)"),
    ("spec.containers[kserve-container].ports[http1].hostPort", "reach MLServer from the host: no Service here"),
    # the `helm test` Pod
    (
        "spec.containers[v2-request].args[1]",
        "the predictor's Service URL -> the host port that reaches it from another pod (no Service, no cluster DNS)",
    ),
]
TEST_CONTAINER = "v2-request"


def predictor_pod(isvc: dict[str, Any]) -> dict[str, Any]:
    """The Pod KServe would create from the predictor (minus KServe's own fields), before local changes."""
    predictor = copy.deepcopy(isvc["spec"]["predictor"])
    spec = {k: v for k, v in predictor.items() if k not in KSERVE_FIELDS}
    name = f"{isvc['metadata']['name']}-predictor"
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": name}}, "spec": spec}


def job_pod(job: dict[str, Any]) -> dict[str, Any]:
    """The Pod a Job would create (the chart's prebuild Job): its pod template as rendered, named after the Job."""
    template = copy.deepcopy(job["spec"]["template"])
    name = job["metadata"]["name"]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, **template.get("metadata", {})},
            "spec": template["spec"]}  # fmt: skip


def local_pod(isvc: dict[str, Any], host_port: int) -> dict[str, Any]:
    """predictor_pod() with exactly LOCAL_CHANGES applied."""
    return localize(predictor_pod(isvc), host_port)


def local_test_pod(pod: dict[str, Any], url: str) -> dict[str, Any]:
    """The chart's rendered `helm test` Pod with exactly its LOCAL_CHANGES applied: it tests the model at ``url``."""
    pod = copy.deepcopy(pod)
    for container in pod["spec"]["containers"]:
        if container["name"] == TEST_CONTAINER:
            container["args"][1] = url
    return pod


def localize(pod: dict[str, Any], host_port: int) -> dict[str, Any]:
    """A copy of ``pod`` (the chart's predictor, or the pod ci/kserve_pod.py builds for the KServe-native mode) with
    exactly LOCAL_CHANGES applied."""
    pod = copy.deepcopy(pod)
    spec = pod["spec"]
    spec["restartPolicy"] = "Never"
    for container in spec["containers"]:
        if container["name"] == "kserve-container":
            for port in container["ports"]:
                if port["name"] == "http1":
                    port["hostPort"] = host_port
    return pod


def differences(a: Any, b: Any, path: str = "") -> list[str]:
    """Paths where two manifests differ; list items are keyed by their `name` when they have one."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            sub = f"{path}.{key}" if path else key
            if key not in a or key not in b:
                out.append(sub)
            else:
                out += differences(a[key], b[key], sub)
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        out = []
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            label = x.get("name", index) if isinstance(x, dict) else index
            out += differences(x, y, f"{path}[{label}]")
        return out
    return [] if a == b else [path]


def allowed(path: str) -> bool:
    """Is ``path`` one of LOCAL_CHANGES (``[*]`` matches any container)?"""
    for pattern, _reason in LOCAL_CHANGES:
        regex = re.escape(pattern).replace(r"\[\*\]", r"\[[^\]]+\]")
        if re.fullmatch(regex, path):
            return True
    return False
