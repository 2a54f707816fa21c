"""The fetch step against real stores: the moto S3 server, the MLflow registry, local paths, a moto S3 server
that checks credentials, and a real HTTP server speaking MLflow's artifact API that fails on purpose."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import PERMISSION_DENIED, RESOURCE_DOES_NOT_EXIST, TEMPORARILY_UNAVAILABLE
from mlflow_kserve.errors import FetchError
from mlflow_kserve.fetch import ClientRetries, classify, fetch_model
from support.cli import last_error
from support.logs import FetchLog
from support.models import ROOT, BuiltModel, builder_python
from support.services import (
    FAKE_CREDENTIALS,
    S3,
    Registry,
    artifact_http_server,
    moto_s3_checking_credentials,
)

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def store_env(s3: S3, registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {**s3.env, **registry.env}.items():
        monkeypatch.setenv(key, value)


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def _no_secret(text: str) -> None:
    for secret in FAKE_CREDENTIALS.values():
        assert secret not in text


@pytest.mark.parametrize("suffix", ["/", ""], ids=["trailing-slash", "no-trailing-slash"])
def test_s3_prefix_lands_with_mlmodel_on_top(
    suffix: str, s3_models: dict[str, str], models: dict[str, BuiltModel], store_env: None, tmp_path: Path
) -> None:
    result = fetch_model(s3_models["sklearn-columns"] + suffix, tmp_path / "model")
    assert result.path == tmp_path / "model"
    assert (tmp_path / "model" / "MLmodel").is_file()
    assert _files(tmp_path / "model") == _files(models["sklearn-columns"].path)
    assert result.files == len(_files(models["sklearn-columns"].path)) and result.bytes > 0


def test_registry_version_alias_and_run_uris(
    registry_models: dict[str, str], registry: Registry, models: dict[str, BuiltModel], store_env: None, tmp_path: Path
) -> None:
    version = MlflowClient(registry.tracking_uri).get_model_version_by_alias("custom-extra-dep", "champion")
    uris = [
        registry_models["custom-extra-dep"],
        f"models:/custom-extra-dep/{version.version}",
        f"runs:/{version.run_id}/model",
        f"runs:/{version.run_id}/model/",
    ]
    for index, uri in enumerate(uris):
        fetch_model(uri, tmp_path / f"m{index}")
        # models:/ downloads add MLflow 3's `registered_model_meta` next to the model's own files
        fetched = set(_files(tmp_path / f"m{index}")) - {"registered_model_meta"}
        assert fetched == set(_files(models["custom-extra-dep"].path)), uri


def test_local_path_and_file_uri(models: dict[str, BuiltModel], tmp_path: Path) -> None:
    source = models["sklearn-columns"].path
    fetch_model(str(source), tmp_path / "a")
    fetch_model(f"file://{source}", tmp_path / "b")
    fetch_model(f"{source}/", tmp_path / "c")
    for copy in ("a", "b", "c"):
        assert _files(tmp_path / copy) == _files(source)


def test_refetch_replaces_a_previous_model_and_stale_partials(models: dict[str, BuiltModel], tmp_path: Path) -> None:
    dest = tmp_path / "model"
    (tmp_path / ".model.fetch-crashed").mkdir()  # a fetch killed mid-way
    (tmp_path / ".model.fetch-crashed" / "half.bin").write_bytes(b"x")
    dest.mkdir()
    (dest / "stale.txt").write_text("from an older model")
    fetch_model(str(models["sklearn-columns"].path), dest)
    assert not (dest / "stale.txt").exists()
    assert (dest / "MLmodel").is_file()
    assert not list(tmp_path.glob(".model.fetch-*"))


@pytest.mark.parametrize(
    "uri",
    [
        "s3://models/no/such/model",  # nothing under the prefix: MLflow makes an empty dir without error
        "s3://no-such-bucket/model/",
        "models:/no-such-model/1",
        "models:/sklearn-columns@no-such-alias",
    ],
)
def test_missing_model_is_not_found_and_not_retried(
    uri: str, registry_models: dict[str, str], store_env: None, fetch_log: FetchLog, tmp_path: Path
) -> None:
    with pytest.raises(FetchError) as info:
        fetch_model(uri, tmp_path / "model", retries=4)
    message = str(info.value)
    assert info.value.exit_code == 3
    assert message.startswith(f"model not found at {uri}"), message
    assert "fix: check the URI" in message and "\n" not in message
    assert fetch_log.retries() == 0, fetch_log.text()
    _no_secret(message + fetch_log.text())
    assert not (tmp_path / "model").exists() and not list(tmp_path.glob(".model.fetch-*"))


def test_s3_denied_is_not_retried_and_hides_credentials(
    store_env: None, fetch_log: FetchLog, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with moto_s3_checking_credentials(tmp_path) as endpoint:
        monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", endpoint)
        with pytest.raises(FetchError) as info:
            fetch_model("s3://models/plain/sklearn-columns/", tmp_path / "model", retries=4)
    message = str(info.value)
    assert info.value.exit_code == 3
    assert message.startswith("access denied fetching s3://models/plain/sklearn-columns/"), message
    assert "InvalidAccessKeyId" in message and "fix: check the credentials" in message
    assert fetch_log.retries() == 0, fetch_log.text()
    _no_secret(message + fetch_log.text())
    assert not (tmp_path / "model").exists()


def test_http_denied_is_not_retried_and_hides_credentials(
    models: dict[str, BuiltModel], fetch_log: FetchLog, tmp_path: Path
) -> None:
    with artifact_http_server(models["sklearn-columns"].path.parent, fail_first=10**6, status=403) as server:
        uri = server.uri("model", query="token=pa55word")
        with pytest.raises(FetchError) as info:
            fetch_model(uri, tmp_path / "model", retries=4)
    message = str(info.value)
    assert info.value.exit_code == 3
    assert "access denied" in message and "pa55word" not in message
    assert len(server.requests) == 1, "a 403 is asked once: no retries, neither ours nor MLflow's"
    assert fetch_log.retries() == 0


@pytest.mark.parametrize("suffix", ["", "/"], ids=["no-trailing-slash", "trailing-slash"])
def test_http_transient_errors_are_retried_with_backoff(
    suffix: str,
    models: dict[str, BuiltModel],
    fetch_log: FetchLog,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # The operator turned MLflow's own HTTP retries off: each 503 reaches our loop, which retries it.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    source = models["sklearn-columns"].path
    with artifact_http_server(source.parent, fail_first=2, status=503) as server:
        result = fetch_model(server.uri(source.name) + suffix, tmp_path / "model", retries=4, backoff=0.1)
    assert _files(tmp_path / "model") == _files(source)
    assert result.files == len(_files(source))
    assert server.failures() == 2
    assert fetch_log.retries() == 2
    assert "retrying in 0.1s" in fetch_log.text() and "retrying in 0.2s" in fetch_log.text()


def test_http_persistent_errors_give_up_after_bounded_retries(
    models: dict[str, BuiltModel], fetch_log: FetchLog, tmp_path: Path
) -> None:
    source = models["sklearn-columns"].path
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ
    with artifact_http_server(source.parent, fail_first=10**6, status=503) as server:
        with pytest.raises(FetchError) as info:
            fetch_model(server.uri(source.name), tmp_path / "model", retries=1, backoff=0.1)
    message = str(info.value)
    assert info.value.exit_code == 3
    assert f"could not fetch {server.uri(source.name)} after 2 attempts" in message, message
    assert "fix: check the endpoint" in message
    # 2 attempts of ours, each 1 request + ClientRetries' 2 MLflow retries (MLflow's default would be 7).
    assert len(server.requests) == 2 * (1 + ClientRetries().mlflow_http_max_retries)
    assert fetch_log.retries() == 1
    assert not (tmp_path / "model").exists()


def test_client_retry_limits_apply_only_where_the_operator_set_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", raising=False)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "7")
    with ClientRetries(mlflow_http_max_retries=3).applied():
        assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "3"
        assert os.environ["AWS_MAX_ATTEMPTS"] == "7"
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ
    assert os.environ["AWS_MAX_ATTEMPTS"] == "7"


def test_progress_is_logged_while_a_slow_download_runs(
    models: dict[str, BuiltModel], fetch_log: FetchLog, tmp_path: Path
) -> None:
    source = models["sklearn-columns"].path
    with artifact_http_server(source.parent, delay=0.2) as server:
        fetch_model(server.uri(source.name), tmp_path / "model", progress_seconds=0.1)
    progress = [r.getMessage() for r in fetch_log.records if r.getMessage().startswith("downloading:")]
    assert progress, fetch_log.text()
    assert fetch_log.records[-1].getMessage().startswith(f"fetched {len(_files(source))} files")


@pytest.mark.network
@pytest.mark.parametrize(
    ("uri", "package", "extra"),
    [
        ("gs://models/model", "google-cloud-storage", "gcs"),
        ("wasbs://models@acct.blob.core.windows.net/model", "azure-storage-blob", "azure"),
        ("abfss://models@acct.dfs.core.windows.net/model", "azure-storage-file-datalake", "azure"),
    ],
)
def test_a_store_whose_client_library_is_missing_names_its_package(
    uri: str, package: str, extra: str, tmp_path: Path
) -> None:
    """In a real environment without the store clients (the builder venv of the MLflow 3 test models: MLflow
    with no google-cloud-storage and no azure package), the CLI says which package and extra to install."""
    python = builder_python("mlflow3")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "initcontainer")}
    args = ["-m", "mlflow_kserve", "check", "--model-uri", uri, "--fetch-retries", "0",
            "--models-dir", str(tmp_path / "models"), "--env-dir", str(tmp_path / "env")]  # fmt: skip
    proc = subprocess.run([python, *args], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 3, proc.stderr
    message = last_error(proc)
    assert f"could not fetch {uri}: its store's client library {package} is missing" in message, message
    assert f"pip install 'mlflow-kserve[{extra}]'" in message


def _client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (_client_error("SlowDown", 503), "transient"),
        (_client_error("InternalError", 500), "transient"),
        (_client_error("RequestTimeout", 400), "transient"),
        (_client_error("NoSuchKey", 404), "not-found"),
        (_client_error("AccessDenied", 403), "denied"),
        (_client_error("SignatureDoesNotMatch", 403), "denied"),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:9"), "transient"),
        (MlflowException("no", error_code=RESOURCE_DOES_NOT_EXIST), "not-found"),
        (MlflowException("no", error_code=PERMISSION_DENIED), "denied"),
        (MlflowException("no", error_code=TEMPORARILY_UNAVAILABLE), "transient"),
        (ConnectionResetError(104, "Connection reset by peer"), "transient"),
        (ValueError("something else at 127.0.0.1:5000"), "other"),
    ],
)
def test_classify_sdk_errors(exc: BaseException, kind: str) -> None:
    assert classify(exc) == kind
