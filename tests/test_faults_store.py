"""Fault suite: the model store misbehaving. Path traversal from S3 keys (moto), from the registry (`mlflow
server`) and from an artifact server's listing ('..' in an artifact path: exit 4 naming it, nothing written
outside); S3 answering 500 then OK (retried, ready) and 500 forever (bounded retries, exit 3) through a real
proxy in front of moto; an artifact server too slow to answer (bounded by MLflow's request timeout)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support.faults import URI_PASSWORD, Dirs, assert_clean, assert_fails, cli, planted
from support.models import BuiltModel
from support.services import S3, Registry, artifact_http_server, failing_proxy, register

pytestmark = pytest.mark.timeout(900)
ESCAPE = ["escapes the model directory", "nothing was written outside it", "fix: remove or rename the object"]


def _nothing_outside(tmp_path: Path) -> None:
    assert not [p for p in tmp_path.parent.rglob("evil*.txt")], "a file landed outside the model directory"


def test_s3_key_with_dotdot(s3: S3, models: dict[str, BuiltModel], tmp_path: Path) -> None:
    uri = s3.upload_dir(models["sklearn-columns"].path, "traversal/key")
    s3.client().put_object(Bucket=s3.bucket, Key="traversal/key/../../evil-s3.txt", Body=b"planted")
    dirs = Dirs(tmp_path / "pod")
    proc = cli("init", uri, dirs, planted({**os.environ, **s3.env}))
    assert_fails(proc, 4, dirs, f"an artifact path under {uri}", *ESCAPE)
    _nothing_outside(tmp_path)


def test_registry_artifact_with_dotdot(
    registry: Registry, s3: S3, models: dict[str, BuiltModel], tmp_path: Path
) -> None:
    from mlflow import MlflowClient

    uri = register(registry, s3, "traversal-model", models["sklearn-columns"].path)
    # The planted key goes under this version's own run: the registry and bucket are shared with other tests' models
    # (guessing "the newest MLmodel" by its 1-second LastModified once planted it in another model, which then failed).
    run_id = MlflowClient(registry.tracking_uri).get_model_version_by_alias("traversal-model", "champion").run_id
    client = s3.client()
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=s3.bucket, Prefix="mlartifacts/")
    keys = [o["Key"] for page in pages for o in page["Contents"]]
    model_prefix = next(k for k in keys if k.endswith(f"/{run_id}/artifacts/model/MLmodel")).rsplit("/", 1)[0]
    client.put_object(Bucket=s3.bucket, Key=f"{model_prefix}/../../../evil-registry.txt", Body=b"planted")
    dirs = Dirs(tmp_path / "pod")
    proc = cli("init", uri, dirs, planted({**os.environ, **s3.env, **registry.env}))
    assert_fails(proc, 4, dirs, *ESCAPE)
    _nothing_outside(tmp_path)


def test_artifact_server_listing_dotdot(models: dict[str, BuiltModel], tmp_path: Path) -> None:
    root = models["sklearn-columns"].path.parent
    with artifact_http_server(root, planted=("../../../evil-http.txt",)) as server:
        uri = server.uri("model").replace("http://", f"http://reader:{URI_PASSWORD}@")
        dirs = Dirs(tmp_path / "pod")
        proc = cli("init", uri, dirs, planted(os.environ))
    assert_fails(proc, 4, dirs, *ESCAPE)
    _nothing_outside(tmp_path)


def test_s3_answering_500_then_ok_is_retried(s3: S3, models: dict[str, BuiltModel], tmp_path: Path) -> None:
    uri = s3.upload_dir(models["sklearn-columns"].path, "flaky/model")
    with failing_proxy(s3.endpoint, fail_first=2) as proxy:
        env = planted({**os.environ, **s3.env, "MLFLOW_S3_ENDPOINT_URL": proxy.url, "AWS_ENDPOINT_URL_S3": proxy.url})
        dirs = Dirs(tmp_path / "pod")
        proc = cli("check", uri, dirs, env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "fetch attempt 1 failed" in proc.stderr and "retrying" in proc.stderr
    assert_clean(proc.stdout + proc.stderr)
    assert (dirs.models / "model" / "MLmodel").is_file()


def test_s3_answering_500_forever_gives_up_after_bounded_retries(
    s3: S3, models: dict[str, BuiltModel], tmp_path: Path
) -> None:
    uri = s3.upload_dir(models["sklearn-columns"].path, "down/model")
    with failing_proxy(s3.endpoint, fail_first=10**9) as proxy:
        env = planted({**os.environ, **s3.env, "MLFLOW_S3_ENDPOINT_URL": proxy.url, "AWS_ENDPOINT_URL_S3": proxy.url})
        dirs = Dirs(tmp_path / "pod")
        proc = cli("init", uri, dirs, env, "--fetch-retries", "1")
    assert_fails(proc, 3, dirs, f"could not fetch {uri} after 2 attempts", "InternalError", "--fetch-retries")
    # our 2 attempts, each botocore's 2 (AWS_MAX_ATTEMPTS set by the product): a bounded number of requests
    assert 2 <= len(proxy.requests) <= 8, proxy.requests


def test_artifact_server_too_slow_is_bounded(models: dict[str, BuiltModel], tmp_path: Path) -> None:
    root = models["sklearn-columns"].path.parent
    with artifact_http_server(root, delay=60) as server:
        dirs = Dirs(tmp_path / "pod")
        env = planted(os.environ, MLFLOW_HTTP_REQUEST_TIMEOUT="2")  # the operator's bound on one request
        proc = cli("init", server.uri("model"), dirs, env, "--fetch-retries", "1")
    assert_fails(proc, 3, dirs, "after 2 attempts", "--fetch-retries")
