"""ci/kserve_pod.py builds the predictor pod as KServe v0.20.0 would, from the runtime chart's objects and KServe's
own (vendored in ci/crds): which storage container takes which URI, which runtime serves which InferenceService,
and what the pod looks like. The e2e (ci/e2e.py) then runs these pods with podman."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart.conftest import RUNTIME_CHART, render

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "ci"))

import kserve_pod  # noqa: E402
from kserve_pod import KServeRefusal, StorageInitializerConfig  # noqa: E402

CRDS = ROOT / "ci" / "crds"
DEFAULT_CSC = yaml.safe_load((CRDS / "kserve-v0.20.0-default-storagecontainer.yaml").read_text())
KSERVE_MLSERVER = yaml.safe_load((CRDS / "kserve-v0.20.0-kserve-mlserver.yaml").read_text())
EXAMPLE = yaml.safe_load((ROOT / "examples" / "kserve-native" / "inferenceservice.yaml").read_text())


def _objects(scenario: str = "minimal", *extra: str) -> tuple[dict[str, Any], dict[str, Any]]:
    docs = render(RUNTIME_CHART / "ci" / f"{scenario}-values.yaml", *extra, chart=RUNTIME_CHART)
    csc = next(d for d in docs if d["kind"] == "ClusterStorageContainer")
    csr = next(d for d in docs if d["kind"] == "ClusterServingRuntime")
    return csc, csr


@pytest.fixture(scope="module")
def ours() -> tuple[dict[str, Any], dict[str, Any]]:
    return _objects()


def _isvc(uri: str = "models:/fraud@champion", **model: Any) -> dict[str, Any]:
    isvc = copy.deepcopy(EXAMPLE)
    isvc["metadata"]["namespace"] = "models"
    isvc["spec"]["predictor"]["model"]["storageUri"] = uri
    isvc["spec"]["predictor"]["model"].update(model)
    for key in [k for k, v in isvc["spec"]["predictor"]["model"].items() if v is None]:
        del isvc["spec"]["predictor"]["model"][key]
    return isvc


def _pod(ours: tuple[dict[str, Any], dict[str, Any]], isvc: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    csc, csr = ours
    return kserve_pod.predictor_pod(
        isvc, cluster_runtimes=[KSERVE_MLSERVER, csr], storage_containers=[DEFAULT_CSC, csc], **kwargs
    )


# --- which storage container takes which URI ------------------------------------------------------------------


def test_every_prefix_of_ours_is_ours_alone(ours: tuple[dict[str, Any], dict[str, Any]]) -> None:
    """KServe picks among matching storage containers in an order nothing guarantees: no URI may match both."""
    csc = ours[0]
    prefixes = [f["prefix"] for f in csc["spec"]["supportedUriFormats"]]
    assert {"models:/", "runs:/", "mlflow+s3://", "mlflow+gs://"} <= set(prefixes)
    for prefix in prefixes:
        for tail in ("bucket/path/model", "host.example:5000/path/model", "fraud@champion"):
            uri = prefix + tail
            assert kserve_pod.matching_storage_containers(uri, [DEFAULT_CSC, csc]) == [csc], uri


@pytest.mark.parametrize(
    "uri",
    ["s3://bucket/model", "gs://bucket/model", "https://host.example/model/x", "hf://org/model",
     "https://acct.blob.core.windows.net/c/model", "hdfs://nn/model"],
)  # fmt: skip
def test_kserve_default_storage_container_keeps_plain_stores(
    ours: tuple[dict[str, Any], dict[str, Any]], uri: str
) -> None:
    assert kserve_pod.matching_storage_containers(uri, [DEFAULT_CSC, ours[0]]) == [DEFAULT_CSC]


@pytest.mark.parametrize("uri", ["mlflow+https://host.example/path/model", "mlflow+http://host.example/a/b"])
def test_mlflow_plus_http_would_be_ambiguous_so_it_is_not_claimed(uri: str) -> None:
    """The default storage container's regex `https?://(.+)/(.+)` is unanchored (Go's MatchString): it takes any
    URI containing http(s)://<host>/<path>. The chart claims mlflow-artifacts: for MLflow's artifact proxy."""
    assert kserve_pod.uri_supported(DEFAULT_CSC["spec"], uri)


def test_validation_accepts_our_uris_only_through_our_storage_container(
    ours: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    kserve_pod.validate_storage_uri("mlflow+s3://b/k", [DEFAULT_CSC, ours[0]])
    with pytest.raises(KServeRefusal, match="not supported"):
        kserve_pod.validate_storage_uri("mlflow+s3://b/k", [DEFAULT_CSC])


def test_storage_container_named_explicitly(ours: tuple[dict[str, Any], dict[str, Any]]) -> None:
    csc = ours[0]
    name = csc["metadata"]["name"]
    assert kserve_pod.storage_container_spec("models:/a@b", [DEFAULT_CSC, csc], name) is csc["spec"]
    with pytest.raises(KServeRefusal, match="does not support"):
        kserve_pod.storage_container_spec("s3://b/k", [DEFAULT_CSC, csc], name)
    with pytest.raises(KServeRefusal, match="not found"):
        kserve_pod.storage_container_spec("models:/a@b", [DEFAULT_CSC], name)


# --- which runtime serves which InferenceService ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "protocol", "runtime"),
    [(None, "v2", "mlflow-kserve"), ("2", "v2", "mlflow-kserve"), ("3", "v2", "mlflow-kserve"),
     ("1", "v2", "kserve-mlserver")],
)  # fmt: skip
def test_auto_selection_by_priority(
    ours: tuple[dict[str, Any], dict[str, Any]], version: str | None, protocol: str, runtime: str
) -> None:
    isvc = _isvc(protocolVersion=protocol)
    if version:
        isvc["spec"]["predictor"]["model"]["modelFormat"]["version"] = version
    name, _spec, _annotations = kserve_pod.select_runtime(isvc, [], [KSERVE_MLSERVER, ours[1]])
    assert name == runtime


def test_without_protocol_v2_no_runtime_is_found_unless_named(ours: tuple[dict[str, Any], dict[str, Any]]) -> None:
    """protocolVersion unset means v1, which neither runtime serves; naming the runtime picks it and sets v2."""
    with pytest.raises(KServeRefusal, match="no runtime found"):
        kserve_pod.select_runtime(_isvc(protocolVersion=None), [], [KSERVE_MLSERVER, ours[1]])
    isvc = _isvc(protocolVersion=None, runtime="mlflow-kserve")
    name, _spec, _annotations = kserve_pod.select_runtime(isvc, [], [KSERVE_MLSERVER, ours[1]])
    assert name == "mlflow-kserve"
    assert isvc["spec"]["predictor"]["model"]["protocolVersion"] == "v2"


def test_opt_in_runtime_is_used_only_when_named() -> None:
    _csc, csr = _objects("opt-in")
    assert kserve_pod.select_runtime(_isvc(), [], [KSERVE_MLSERVER, csr])[0] == "kserve-mlserver"
    three = _isvc()
    three["spec"]["predictor"]["model"]["modelFormat"]["version"] = "3"
    with pytest.raises(KServeRefusal, match="no runtime found"):
        kserve_pod.select_runtime(three, [], [KSERVE_MLSERVER, csr])
    named = _isvc(runtime="mlflow-kserve-v3")
    named["spec"]["predictor"]["model"]["modelFormat"]["version"] = "3"
    assert kserve_pod.select_runtime(named, [], [KSERVE_MLSERVER, csr])[0] == "mlflow-kserve-v3"


def test_a_namespaced_runtime_comes_before_cluster_ones(ours: tuple[dict[str, Any], dict[str, Any]]) -> None:
    namespaced = copy.deepcopy(KSERVE_MLSERVER)
    namespaced.update(kind="ServingRuntime")
    namespaced["metadata"] = {"name": "team-mlserver", "namespace": "models"}
    assert kserve_pod.select_runtime(_isvc(), [namespaced], [KSERVE_MLSERVER, ours[1]])[0] == "team-mlserver"


def test_kserve_accepts_our_runtime_beside_kserve_mlserver(ours: tuple[dict[str, Any], dict[str, Any]]) -> None:
    assert kserve_pod.priority_conflict(ours[1], KSERVE_MLSERVER) is None
    same = copy.deepcopy(ours[1])
    for fmt in same["spec"]["supportedModelFormats"]:
        fmt["priority"] = 1
    assert "same priority assigned for the model format mlflow" in (
        kserve_pod.priority_conflict(same, KSERVE_MLSERVER) or ""
    )


# --- the pod -----------------------------------------------------------------------------------------------------


def test_the_pod_kserve_builds(ours: tuple[dict[str, Any], dict[str, Any]]) -> None:
    csc, _csr = ours
    isvc = _isvc()
    isvc["metadata"]["annotations"] = {
        "mlflow-kserve.io/extra-requirements": "roman==4.2",
        "autoscaling.knative.dev/min-scale": "1",
    }
    pod = _pod(ours, isvc)
    spec = pod["spec"]
    [init] = spec["initContainers"]
    assert init["name"] == "storage-initializer"
    assert init["args"] == ["models:/fraud@champion", "/mnt/models"]
    assert init["command"] == ["mlflow-kserve", "storage-initializer"] == csc["spec"]["container"]["command"]
    assert init["image"] == csc["spec"]["container"]["image"]
    assert init["resources"] == csc["spec"]["container"]["resources"]  # ours override KServe's defaults
    assert init["volumeMounts"] == [
        {"name": "kserve-provision-location", "mountPath": "/mnt/models", "readOnly": False}
    ]
    env = {e["name"]: e for e in init["env"]}
    assert env["MLFLOW_KSERVE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.labels['serving.kserve.io/inferenceservice']"
    )
    assert env["HF_HUB_ENABLE_HF_TRANSFER"] == {"name": "HF_HUB_ENABLE_HF_TRANSFER", "value": "1"}
    [server] = spec["containers"]
    assert server["name"] == "kserve-container"
    mounts = {m["mountPath"]: m for m in server["volumeMounts"]}
    assert mounts["/mnt/models"] == {"name": "kserve-provision-location", "mountPath": "/mnt/models", "readOnly": True}
    assert server["readinessProbe"]["httpGet"]["path"] == "/v2/models/fraud/ready"
    assert {"name": "INFERENCE_SERVICE_NAME", "value": "fraud"} in server["env"]
    assert {"name": "kserve-provision-location", "emptyDir": {}} in spec["volumes"]
    assert pod["metadata"]["labels"]["serving.kserve.io/inferenceservice"] == "fraud"
    annotations = pod["metadata"]["annotations"]
    assert annotations["mlflow-kserve.io/extra-requirements"] == "roman==4.2"
    assert "autoscaling.knative.dev/min-scale" not in annotations
    assert annotations["prometheus.kserve.io/port"] == "8082"


def test_the_model_volume_is_writable_in_the_server_only_by_annotation(
    ours: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    isvc = _isvc()
    isvc["metadata"]["annotations"] = {"storage.kserve.io/readonly": "false"}
    server = _pod(ours, isvc)["spec"]["containers"][0]
    assert {"name": "kserve-provision-location", "mountPath": "/mnt/models", "readOnly": False} in server[
        "volumeMounts"
    ]


def test_the_inferenceservice_container_overrides_the_runtime(ours: tuple[dict[str, Any], dict[str, Any]]) -> None:
    isvc = _isvc(resources={"limits": {"memory": "8Gi"}}, env=[{"name": "EXTRA", "value": "1"}], args=["--x"])
    server = _pod(ours, isvc)["spec"]["containers"][0]
    assert server["resources"]["limits"] == {"cpu": "2", "memory": "8Gi"}
    assert server["resources"]["requests"] == ours[1]["spec"]["containers"][0]["resources"]["requests"]
    names = [e["name"] for e in server["env"]]  # a new item of the patch goes before the original's (see below)
    assert names[:2] == ["EXTRA", "MLFLOW_KSERVE_MODELS_DIR"] and names[-1] == "INFERENCE_SERVICE_NAME"
    assert server["args"] == ["--x"]


def test_kserve_ca_bundle_and_istio_uid(ours: tuple[dict[str, Any], dict[str, Any]]) -> None:
    isvc = _isvc()
    isvc["metadata"]["annotations"] = {"serving.kserve.io/storage-initializer-uid": "1337"}
    pod = _pod(ours, isvc, config=StorageInitializerConfig(ca_bundle_configmap="corp-ca"))
    init = pod["spec"]["initContainers"][0]
    assert {"name": "cabundle-cert", "mountPath": "/etc/ssl/custom-certs", "readOnly": True} in init["volumeMounts"]
    assert {"name": "cabundle-cert", "configMap": {"name": "global-ca-bundle"}} in pod["spec"]["volumes"]
    assert init["securityContext"]["runAsUser"] == 1337


def test_the_storage_container_must_be_named_storage_initializer(
    ours: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    """The webhook runs again on reinvocation; it skips a pod that has a `storage-initializer` init container
    (injector.go:389-393). Under another name the container is injected twice (kserve/kserve#3900)."""
    csc, csr = ours
    pod = _pod(ours, _isvc())
    kserve_pod.inject_storage_initializer(pod, [DEFAULT_CSC, csc], StorageInitializerConfig())
    assert len(pod["spec"]["initContainers"]) == 1
    renamed = copy.deepcopy(csc)
    renamed["spec"]["container"]["name"] = "mlflow-init"
    pod = kserve_pod.predictor_pod(_isvc(), cluster_runtimes=[csr], storage_containers=[DEFAULT_CSC, renamed])
    kserve_pod.inject_storage_initializer(pod, [DEFAULT_CSC, renamed], StorageInitializerConfig())
    assert [c["name"] for c in pod["spec"]["initContainers"]] == ["mlflow-init", "mlflow-init"]


def test_kserve_mlserver_gets_mlservers_defaults_and_ours_does_not(
    ours: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    """KServe's MLServer defaults (MLSERVER_MODEL_URI & co) would make MLServer load /mnt/models on its own."""
    one = _isvc()
    one["spec"]["predictor"]["model"]["modelFormat"]["version"] = "1"
    theirs = _pod(ours, one)["spec"]["containers"][0]
    assert {"name": "MLSERVER_MODEL_URI", "value": "/mnt/models"} in theirs["env"]
    assert {"name": "MLSERVER_MODEL_IMPLEMENTATION", "value": "mlserver_mlflow.MLflowRuntime"} in theirs["env"]
    mine = _pod(ours, _isvc())["spec"]["containers"][0]
    assert not [e for e in mine["env"] if e["name"].startswith("MLSERVER_MODEL_")]


# --- the strategic merge KServe uses -----------------------------------------------------------------------------


def test_strategic_merge_keys_lists_by_their_merge_key() -> None:
    base = {"name": "c", "args": ["a", "b"], "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
            "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}  # fmt: skip
    patch = {"args": ["x"], "env": [{"name": "C", "value": "3"}, {"name": "B", "value": "9"}],
             "resources": {"limits": {"memory": "4Gi"}}}  # fmt: skip
    merged = kserve_pod.merge_container(base, patch)
    assert merged["args"] == ["x"]
    # mergeSortedSlice: the patch's order, the original's other items placed before a patch item they preceded;
    # a patch item new to the list (C) has no original position and goes first.
    assert merged["env"] == [{"name": "C", "value": "3"}, {"name": "A", "value": "1"}, {"name": "B", "value": "9"}]
    assert merged["resources"] == {"limits": {"cpu": "1", "memory": "4Gi"}}
    assert merged["name"] == "c"


def test_merge_keeps_the_overlays_choice_of_value_or_value_from() -> None:
    base = {"name": "c", "env": [{"name": "T", "value": "plain"}]}
    overlay = {"env": [{"name": "T", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}
    assert kserve_pod.merge_container(base, overlay)["env"] == overlay["env"]
