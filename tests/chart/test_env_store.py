"""The environment store in the chart: the init container reads the store; the prebuild Job (a Helm hook) runs
`mlflow-kserve build` configured as the init container is (so it publishes under the key the pods compute), with
its own write credentials, and validates against Kubernetes' schemas (the scenario is one of charts/*/ci, so
every scenario test runs on it too). The runtime chart passes the store to its storage container."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import kubernetes_validate
import pytest
from kubernetes_validate.utils import latest_version
from mlflow_kserve import cli

from .conftest import CHART, RUNTIME_CHART, RUNTIME_SCENARIOS, render

PREBUILD = CHART / "ci" / "env-store-prebuild-values.yaml"
POD_ONLY = {
    "MLFLOW_KSERVE_MAX_BATCH_SIZE", "MLFLOW_KSERVE_MAX_BATCH_TIME", "MLFLOW_KSERVE_CACHE_DIR",
    "MLFLOW_KSERVE_CACHE_MAX_BYTES", "MLFLOW_KSERVE_SERVE_FROM_CACHE", "MLFLOW_KSERVE_ENV_STORE_PUBLISH",
}  # fmt: skip
CREDENTIALS = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}


def _kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_the_job_is_a_hook_running_build_as_the_init_container_is_configured() -> None:
    docs = render(PREBUILD)
    (job,) = _kind(docs, "Job")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    pod = job["spec"]["template"]["spec"]
    (build,) = pod["containers"]
    assert build["args"] == ["build"] and pod["restartPolicy"] == "Never"
    isvc = _kind(docs, "InferenceService")[0]["spec"]["predictor"]
    init = _env(isvc["initContainers"][0])
    assert init["MLFLOW_KSERVE_ENV_STORE"] == "s3://environments/mlflow-kserve"
    assert build["image"] == isvc["initContainers"][0]["image"]
    job_env = _env(build)
    # Everything that names the environment is the init container's; the credentials are the Job's own.
    same = {k: v for k, v in init.items() if k not in POD_ONLY | CREDENTIALS}
    assert {k: job_env.get(k) for k in same} == same
    assert not POD_ONLY & set(job_env), "serving-only settings are not the build's"
    assert job_env["AWS_ACCESS_KEY_ID"]["secretKeyRef"]["name"] == "minio-environments-write"
    assert init["AWS_ACCESS_KEY_ID"]["secretKeyRef"]["name"] == "minio-read"
    assert [e["name"] for e in build["env"]].count("AWS_ACCESS_KEY_ID") == 1


def test_the_job_reads_only_what_build_reads() -> None:
    """Against the CLI's own option definitions: `build` reads every variable the Job sets."""
    known = {p.envvar for p in cli.build.params if isinstance(p, click.Option)}
    (job,) = _kind(render(PREBUILD), "Job")
    ours = {e["name"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    ours = {name for name in ours if name.startswith("MLFLOW_KSERVE_")}
    assert ours <= known, ours - known
    assert {"MLFLOW_KSERVE_MODEL_URI", "MLFLOW_KSERVE_ENV_STORE", "MLFLOW_KSERVE_BACKEND"} <= ours


def test_the_jobs_serviceaccount_is_a_hook_before_it() -> None:
    docs = render(PREBUILD)
    (job,) = _kind(docs, "Job")
    accounts = {d["metadata"]["name"]: d for d in _kind(docs, "ServiceAccount")}
    name = job["spec"]["template"]["spec"]["serviceAccountName"]
    account = accounts[name]
    assert account["metadata"]["annotations"]["helm.sh/hook"] == job["metadata"]["annotations"]["helm.sh/hook"]
    assert int(account["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(
        job["metadata"]["annotations"]["helm.sh/hook-weight"]
    )
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].endswith("environments-write")


@pytest.mark.parametrize("version", ["1.29.0", latest_version()])
def test_the_job_and_its_account_match_kubernetes_schemas(version: str) -> None:
    docs = render(PREBUILD)
    for doc in _kind(docs, "Job") + _kind(docs, "ServiceAccount"):
        kubernetes_validate.validate(doc, version, strict=True)


def test_without_a_store_or_prebuild_there_is_no_job(tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text("model:\n  uri: s3://b/m\nenvStore:\n  uri: gs://envs/prefix\n  publish: true\n")
    docs = render(values)
    assert not _kind(docs, "Job")
    init = _env(_kind(docs, "InferenceService")[0]["spec"]["predictor"]["initContainers"][0])
    assert (init["MLFLOW_KSERVE_ENV_STORE"], init["MLFLOW_KSERVE_ENV_STORE_PUBLISH"]) == ("gs://envs/prefix", "true")


def test_the_runtime_chart_passes_the_store_to_its_storage_container(tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(RUNTIME_SCENARIOS[0].read_text() + "\nenvStore:\n  uri: s3://environments/kserve\n")
    docs = render(values, chart=RUNTIME_CHART)
    container = next(d for d in docs if d["kind"] == "ClusterStorageContainer")["spec"]["container"]
    env = _env(container)
    assert env["MLFLOW_KSERVE_ENV_STORE"] == "s3://environments/kserve"
    assert "MLFLOW_KSERVE_ENV_STORE_PUBLISH" not in env
