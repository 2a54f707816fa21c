"""`mlflow-kserve storage-initializer <storageUri> <dest>`: KServe's storage-initializer contract (the
KServe-native mode's ClusterStorageContainer). The mlflow+ prefix, the layout under dest, and the
InferenceService's mlflow-kserve.io/* annotations, each validated like the flag it names."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
from mlflow_kserve import storage_initializer
from mlflow_kserve.errors import ConfigError
from mlflow_kserve.fetch import fetch_model
from support.cli import last_error, mlflow_kserve
from support.models import build
from support.services import S3, artifact_http_server

# What the runtime chart's env fieldRefs carry: one variable per annotation (empty when absent).
ANNOTATION = "MLFLOW_KSERVE_ANNOTATION_{}"


@pytest.mark.parametrize(
    ("storage_uri", "uri"),
    [
        ("mlflow+s3://models/fraud/v7", "s3://models/fraud/v7"),
        ("mlflow+gs://bucket/m", "gs://bucket/m"),
        ("mlflow+wasbs://c@acct.blob.core.windows.net/m", "wasbs://c@acct.blob.core.windows.net/m"),
        ("models:/fraud@champion", "models:/fraud@champion"),
        ("runs:/abc123/model", "runs:/abc123/model"),
        ("mlflow-artifacts:/1/abc/artifacts/model", "mlflow-artifacts:/1/abc/artifacts/model"),
    ],
)
def test_the_routing_prefix_is_dropped(storage_uri: str, uri: str) -> None:
    assert storage_initializer.store_uri(storage_uri) == uri


def test_an_empty_routing_prefix_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="nothing after 'mlflow\\+'"):
        storage_initializer.store_uri("mlflow+")


def test_the_layout_is_all_under_dest() -> None:
    assert storage_initializer.layout("/mnt/models") == {"models_dir": "/mnt/models", "env_dir": "/mnt/models/.env"}


def test_scratch_points_temp_files_and_home_into_dest_then_removes_them(tmp_path: Path) -> None:
    before = {k: os.environ.get(k) for k in ("TMPDIR", "HOME")}
    with storage_initializer.scratch(tmp_path) as scratch:
        assert os.environ["TMPDIR"] == os.environ["HOME"] == str(scratch) == str(tmp_path / ".tmp")
        assert Path(tempfile.mkstemp()[1]).parent == scratch
    assert not (tmp_path / ".tmp").exists()
    assert {k: os.environ.get(k) for k in ("TMPDIR", "HOME")} == before


@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [
        ("PYTHON_POLICY", "lenient", "annotation mlflow-kserve.io/python-policy: 'lenient' is not one of"),
        ("ALLOW", "vcs", "annotation mlflow-kserve.io/allow='vcs' asks for vcs, which the platform does not let"),
        ("ALLOW", "everything", "annotation mlflow-kserve.io/allow: 'everything' is not one of"),
        ("SLIM", "maybe", "annotation mlflow-kserve.io/slim: 'maybe' is not a valid boolean"),
        ("BACKEND", "triton", "annotation mlflow-kserve.io/backend"),
    ],
)
def test_a_bad_annotation_exits_2_naming_it(tmp_path: Path, key: str, value: str, needle: str) -> None:
    env = {**os.environ, ANNOTATION.format(key): value}
    proc = mlflow_kserve(["storage-initializer", "models:/fraud@champion", str(tmp_path / "models")], env, 60)
    assert proc.returncode == 2, proc.stderr
    assert needle in last_error(proc)
    assert len([ln for ln in proc.stderr.splitlines() if ln.strip()]) == 1, proc.stderr
    assert not (tmp_path / "models").exists(), "nothing is written before the configuration is valid"


def test_the_platform_decides_what_the_allow_annotation_may_grant(tmp_path: Path) -> None:
    """With `vcs` in the runtime chart's annotations.mayAllow the annotation passes validation (and the run goes on
    to the fetch, which fails here: no registry)."""
    env = {**os.environ, ANNOTATION.format("ALLOW"): "vcs", "MLFLOW_KSERVE_ANNOTATIONS_MAY_ALLOW": "vcs url",
           "MLFLOW_TRACKING_URI": "http://127.0.0.1:9", "MLFLOW_KSERVE_FETCH_RETRIES": "0"}  # fmt: skip
    proc = mlflow_kserve(["storage-initializer", "models:/fraud@champion", str(tmp_path / "models")], env, 120)
    assert proc.returncode == 3, proc.stderr


@pytest.mark.e2e
def test_kserve_arguments_and_annotations_build_the_layout_the_server_reads(
    s3: S3, s3_models: dict[str, str], shared_cache: Path, tmp_path: Path
) -> None:
    """A real init from moto S3 through the mlflow+ prefix, with cluster-wide and per-model requirements."""
    dest = tmp_path / "mnt-models"
    env = {
        **os.environ,
        **s3.env,
        "MLFLOW_KSERVE_NAME": "fraud",  # the pod's serving.kserve.io/inferenceservice label
        "MLFLOW_KSERVE_CACHE_DIR": str(shared_cache),
        "MLFLOW_KSERVE_EXTRA_REQUIREMENT": "pyyaml",  # the platform's, for every model
        ANNOTATION.format("EXTRA_REQUIREMENTS"): "roman==4.2\n",  # this model's
        ANNOTATION.format("PYTHON_POLICY"): "",  # absent annotations read as ""
    }
    uri = "mlflow+" + s3_models["sklearn-columns"]
    proc = mlflow_kserve(["storage-initializer", uri, str(dest)], env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (dest / "model" / "MLmodel").is_file()
    assert json.loads((dest / "model-settings.json").read_text())["name"] == "fraud"
    report = json.loads((dest / ".env" / "report.json").read_text())
    assert report["model_uri"] == s3_models["sklearn-columns"]
    assert report["packages"]["roman"] == "4.2" and "pyyaml" in report["packages"]
    assert (dest / ".env" / "venv" / "bin" / "python").exists()
    runtime = ["mlflow_kserve_mlserver"] if report["backend"]["name"] == "mlserver" else []  # MLServer's runtime
    assert sorted(p.name for p in dest.iterdir()) == [".env", "model", "model-settings.json", *runtime]


@pytest.mark.network
def test_mlflow_artifacts_uris_are_fetched_through_the_artifact_proxy(tmp_path: Path) -> None:
    """`mlflow-artifacts:` (claimed by the runtime chart instead of the ambiguous mlflow+https://) goes to MLflow's
    artifact proxy: here a real HTTP server speaking its API, in both forms MLflow accepts (MLflow wants an http(s)
    tracking URI for either: the runtime chart's mlflow.trackingUri)."""
    source = build("sklearn-columns").path
    import mlflow

    with artifact_http_server(source.parent) as server, pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", server.base)
        # An earlier test in this process may have left MLflow's in-process tracking URI on another server: the
        # env is what the init container has, so make MLflow read it again.
        mlflow.set_tracking_uri(server.base)
        try:
            host = server.base.removeprefix("http://")
            fetch_model(f"mlflow-artifacts://{host}/{source.name}", tmp_path / "a", retries=0)
            fetch_model(f"mlflow-artifacts:/{source.name}", tmp_path / "b", retries=0)
        finally:
            mlflow.set_tracking_uri(None)
    assert (tmp_path / "a" / "MLmodel").is_file() and (tmp_path / "b" / "MLmodel").is_file()
