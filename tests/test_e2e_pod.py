"""The e2e runs the chart's predictor pod and its `helm test` Pod as rendered: each local Pod differs from what
helm rendered only by ci/e2e_pod.py's listed changes. (The e2e itself: ci/e2e, run by `make test`.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "ci"))

import e2e_pod  # noqa: E402


def _rendered(kind: str, *sets: str) -> dict:
    cmd = [ROOT / ".tools" / "bin" / "helm", "template", "e2e", ROOT / "charts" / "mlflow-kserve", "-f",
           ROOT / "ci" / "e2e-values.yaml", *(a for s in sets for a in ("--set", s))]  # fmt: skip
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return next(d for d in yaml.safe_load_all(out) if d and d["kind"] == kind)


def _isvc(*sets: str) -> dict:
    return _rendered("InferenceService", *sets)


@pytest.mark.parametrize("sets", [(), ("cache.enabled=true", "cache.type=hostPath", "cache.hostPath=/var/cache/x")])
def test_local_pod_differs_only_by_the_listed_changes(sets: tuple[str, ...]) -> None:
    isvc = _isvc(*sets)
    rendered, local = e2e_pod.predictor_pod(isvc), e2e_pod.local_pod(isvc, 18080)
    changed = e2e_pod.differences(rendered, local)
    assert changed and all(e2e_pod.allowed(path) for path in changed), changed
    assert rendered["spec"]["initContainers"] == local["spec"]["initContainers"]
    assert rendered["spec"]["volumes"] == local["spec"]["volumes"]


def test_the_kserve_native_pod_also_differs_only_by_the_listed_changes() -> None:
    """The KServe-native scenarios run the pod ci/kserve_pod.py builds, with the same local changes only."""
    import kserve_pod

    cmd = [ROOT / ".tools" / "bin" / "helm", "template", "mlflow-kserve", ROOT / "charts" / "mlflow-kserve-runtime",
           "-f", ROOT / "ci" / "e2e-runtime-values.yaml"]  # fmt: skip
    docs = [d for d in yaml.safe_load_all(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout) if d]
    csc, csr = (
        next(d for d in docs if d["kind"] == kind) for kind in ("ClusterStorageContainer", "ClusterServingRuntime")
    )
    isvc = yaml.safe_load((ROOT / "examples" / "kserve-native" / "inferenceservice.yaml").read_text())
    built = kserve_pod.predictor_pod(isvc, cluster_runtimes=[csr], storage_containers=[csc])
    changed = e2e_pod.differences(built, e2e_pod.localize(built, 18080))
    assert changed and all(e2e_pod.allowed(path) for path in changed), changed


def test_an_unlisted_patch_is_caught() -> None:
    isvc = _isvc()
    local = e2e_pod.local_pod(isvc, 18080)
    local["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] = False
    changed = e2e_pod.differences(e2e_pod.predictor_pod(isvc), local)
    assert [p for p in changed if not e2e_pod.allowed(p)] == [
        "spec.containers[kserve-container].securityContext.readOnlyRootFilesystem"
    ]


def test_the_helm_test_pod_differs_only_by_the_service_url() -> None:
    rendered = _rendered("Pod")
    assert rendered["metadata"]["annotations"]["helm.sh/hook"] == "test"
    local = e2e_pod.local_test_pod(rendered, "http://10.0.2.2:18080")
    assert e2e_pod.differences(rendered, local) == ["spec.containers[v2-request].args[1]"]
    assert all(e2e_pod.allowed(path) for path in e2e_pod.differences(rendered, local))
    container = local["spec"]["containers"][0]
    assert container["args"][1] == "http://10.0.2.2:18080"
    assert rendered["spec"]["containers"][0]["args"][1] == "http://e2e-predictor.default.svc.cluster.local"


def test_the_prebuild_pod_is_the_jobs_template_as_rendered() -> None:
    """Scenario 12 runs the chart's prebuild Job as the Pod the Job would create: nothing of its spec changed."""
    job = _rendered("Job", "envStore.uri=s3://models/e2e-environments", "envStore.prebuild.enabled=true")
    pod = e2e_pod.job_pod(job)
    assert pod["spec"] == job["spec"]["template"]["spec"]
    assert pod["spec"]["containers"][0]["args"] == ["build"] and pod["metadata"]["name"] == job["metadata"]["name"]
