"""Every store the docs list (docs/stores.md), each against a real local server of it: S3 (moto), GCS
(gcp-storage-emulator), Azure Blob (Azurite), MLflow's artifact proxy and its model registry (``mlflow server``
with the basic-auth app).

For each store: `check` fetches and plans the model and `run` serves it (e2e); a missing model is "not found"
and refused credentials "denied", neither retried nor printing a secret; an endpoint that is down ends with exit 3
after exactly the attempts ``--fetch-retries`` allows, each attempt sending the number of requests the store's SDK
is bounded to under ours (ClientRetries for MLflow's HTTP client and botocore, sdk_retries.StoreRetries for the
GCS and Azure SDKs), counted at an endpoint that resets every connection.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow_kserve.errors import FetchError
from mlflow_kserve.fetch import ClientRetries, fetch_model
from mlflow_kserve.sdk_retries import AzureRetries
from support.cli import last_error, mlflow_kserve, served, v2_request
from support.emulators import GCS, WRONG_AZURE_KEY, Azure, dead_endpoint, gcs_denying_server
from support.logs import FetchLog
from support.models import BuiltModel
from support.services import FAKE_CREDENTIALS, S3, Registry, free_port, moto_s3_checking_credentials, register

pytestmark = pytest.mark.timeout(600)

STORES = ["s3", "gs", "wasbs", "http", "models"]
MODEL = "sklearn-columns"


@dataclass(frozen=True)
class Store:
    """How to reach one store, and how to make it fail each way."""

    uri: str  # the sklearn-columns model there
    env: dict[str, str]  # what a client needs to reach it, with credentials it accepts
    missing: tuple[str, ...]  # URIs with nothing there
    denied: Callable[[Path], AbstractContextManager[dict[str, str]]]  # env under which it refuses us (a work dir)
    down: Callable[[str], tuple[dict[str, str], str]]  # (env, uri) sending its requests to a given endpoint
    secrets: tuple[str, ...] = ()  # must never be printed
    extra_files: frozenset[str] = frozenset()  # downloaded beside the model's own files


def _env(**values: str) -> Callable[[Path], AbstractContextManager[dict[str, str]]]:
    return lambda _workdir: nullcontext(values)


@pytest.fixture(scope="session")
def s3_store(s3: S3, s3_models: dict[str, str]) -> Store:
    @contextmanager
    def denied(workdir: Path) -> Iterator[dict[str, str]]:
        with moto_s3_checking_credentials(workdir) as endpoint:
            yield {"MLFLOW_S3_ENDPOINT_URL": endpoint, "AWS_ENDPOINT_URL_S3": endpoint}

    uri = s3_models[MODEL]
    missing = (f"s3://{s3.bucket}/no/such/model", "s3://no-such-bucket/model")
    down = lambda dead: ({"MLFLOW_S3_ENDPOINT_URL": dead, "AWS_ENDPOINT_URL_S3": dead}, uri)  # noqa: E731
    return Store(uri, s3.env, missing, denied, down, tuple(FAKE_CREDENTIALS.values()))


@pytest.fixture(scope="session")
def gs_store(gcs: GCS, models: dict[str, BuiltModel]) -> Store:
    @contextmanager
    def denied(_workdir: Path) -> Iterator[dict[str, str]]:
        with gcs_denying_server() as server:
            yield server.env

    uri = gcs.upload_dir(models[MODEL].path, f"plain/{MODEL}")
    missing = ("gs://models/no/such/model", "gs://no-such-bucket/model")
    return Store(uri, gcs.env, missing, denied, lambda dead: ({"STORAGE_EMULATOR_HOST": dead}, uri))


@pytest.fixture(scope="session")
def wasbs_store(azure: Azure, models: dict[str, BuiltModel]) -> Store:
    uri = azure.upload_dir(models[MODEL].path, f"plain/{MODEL}")
    missing = (azure.uri("models", "no/such/model"), azure.uri("no-such-container", f"plain/{MODEL}"))
    denied = _env(AZURE_STORAGE_CONNECTION_STRING=azure.connection_string(WRONG_AZURE_KEY))
    down = lambda dead: ({"AZURE_STORAGE_CONNECTION_STRING": Azure(f"{dead}/a").connection_string()}, uri)  # noqa: E731
    return Store(uri, azure.env, missing, denied, down, (WRONG_AZURE_KEY,))


@pytest.fixture(scope="session")
def proxied_model(auth_registry: Registry, s3: S3, models: dict[str, BuiltModel]) -> tuple[str, str]:
    """The model registered in the registry that proxies its artifacts: (models:/ URI, http:// URI of the
    version's artifacts through the proxy)."""
    models_uri = register(auth_registry, s3, MODEL, models[MODEL].path)
    with pytest.MonkeyPatch.context() as patch:
        for key, value in auth_registry.env.items():
            patch.setenv(key, value)
        source = MlflowClient(auth_registry.tracking_uri).get_model_version_by_alias(MODEL, "champion").source
    assert source.startswith("mlflow-artifacts:/"), source
    path = source.removeprefix("mlflow-artifacts:/")
    return models_uri, f"{auth_registry.tracking_uri}/api/2.0/mlflow-artifacts/artifacts/{path}"


WRONG_PASSWORD = "not-the-password"


@pytest.fixture(scope="session")
def http_store(auth_registry: Registry, proxied_model: tuple[str, str]) -> Store:
    uri, base = proxied_model[1], auth_registry.tracking_uri
    missing = (f"{base}/api/2.0/mlflow-artifacts/artifacts/no/such/model",)
    denied = _env(MLFLOW_TRACKING_PASSWORD=WRONG_PASSWORD)
    return Store(uri, auth_registry.env, missing, denied, lambda dead: ({}, uri.replace(base, dead)), (WRONG_PASSWORD,))


@pytest.fixture(scope="session")
def models_store(auth_registry: Registry, proxied_model: tuple[str, str]) -> Store:
    uri = proxied_model[0]
    missing = ("models:/no-such-model/1", f"models:/{MODEL}@no-such-alias")
    denied = _env(MLFLOW_TRACKING_PASSWORD=WRONG_PASSWORD)
    down = lambda dead: ({"MLFLOW_TRACKING_URI": dead}, uri)  # noqa: E731
    # MLflow 3 adds registered_model_meta to models:/ downloads
    return Store(uri, auth_registry.env, missing, denied, down, (WRONG_PASSWORD,), frozenset({"registered_model_meta"}))


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest) -> Store:
    return request.getfixturevalue(f"{request.param}_store")


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def _dirs(tmp_path: Path) -> list[str]:
    return ["--models-dir", str(tmp_path / "models"), "--env-dir", str(tmp_path / "env")]


@pytest.mark.network
def test_check_fetches_and_plans_from_each_store(
    store: Store, models: dict[str, BuiltModel], cli_env: dict[str, str], tmp_path: Path
) -> None:
    proc = mlflow_kserve(["check", "--model-uri", store.uri, "--json", *_dirs(tmp_path)], {**cli_env, **store.env})
    assert proc.returncode == 0, proc.stderr
    assert _files(tmp_path / "models" / "model") - store.extra_files == _files(models[MODEL].path)
    assert json.loads(proc.stdout)["mlflow_version"] == models[MODEL].expected["mlflow"]


@pytest.mark.e2e
def test_run_serves_from_each_store(
    store: Store, models: dict[str, BuiltModel], cli_env: dict[str, str], shared_cache: Path, tmp_path: Path
) -> None:
    model = models[MODEL]
    args = ["--model-uri", store.uri, "--work-dir", str(tmp_path / "work"), "--cache-dir", str(shared_cache)]
    with served(args, {**cli_env, **store.env}, free_port(), "served", tmp_path / "run.log") as server:
        answer = server.infer(v2_request(model.expected))
    assert answer["outputs"][0]["data"] == pytest.approx(model.expected["output"])


def _fetch_fails(uri: str, env: dict[str, str], tmp_path: Path) -> FetchError:
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        with pytest.raises(FetchError) as info:
            fetch_model(uri, tmp_path / "model", retries=4, backoff=0.1)
    assert info.value.exit_code == 3
    assert not (tmp_path / "model").exists() and not list(tmp_path.glob(".model.fetch-*"))
    return info.value


@pytest.mark.network
def test_a_missing_model_is_not_found_in_each_store(store: Store, tmp_path: Path, fetch_log: FetchLog) -> None:
    for index, uri in enumerate(store.missing):
        message = str(_fetch_fails(uri, store.env, tmp_path / str(index)))
        assert message.startswith(f"model not found at {uri}"), message  # the container/bucket named as given
        assert "fix: check the URI" in message
    assert fetch_log.retries() == 0, fetch_log.text()


@pytest.mark.network
def test_refused_credentials_are_denied_in_each_store(store: Store, tmp_path: Path, fetch_log: FetchLog) -> None:
    with store.denied(tmp_path) as env:
        message = str(_fetch_fails(store.uri, {**store.env, **env}, tmp_path))
    assert message.startswith(f"access denied fetching {store.uri}"), message
    assert "fix: check the credentials" in message
    assert fetch_log.retries() == 0, fetch_log.text()
    for secret in store.secrets:
        assert secret not in message + fetch_log.text()


# Requests each attempt of ours sends to an endpoint that resets every connection, and what they start with.
DOWN = {
    # botocore: AWS_MAX_ATTEMPTS (ClientRetries) tries of the first listing
    "s3": (ClientRetries().aws_max_attempts, "GET /models"),
    # google-cloud-storage: its retry off (GcsRetries), one try of the first listing. (The SDK also looks the
    # bucket up in a background thread, for its telemetry; not counted: the fetch does not wait for it.)
    "gs": (1, "GET /storage/v1/b/models/o?"),
    # azure-storage-blob: 1 + retry_total (AzureRetries) tries of the first listing
    "wasbs": (1 + AzureRetries().retry_total, "GET /a/models?restype=container&comp=list"),
    # MLflow's HTTP client: 1 + MLFLOW_HTTP_REQUEST_MAX_RETRIES (ClientRetries) tries
    "http": (1 + ClientRetries().mlflow_http_max_retries, "GET /api/2.0/mlflow-artifacts/artifacts"),
    "models": (1 + ClientRetries().mlflow_http_max_retries, "GET /api/2.0/mlflow/registered-models/alias"),
}


@pytest.mark.network
def test_an_endpoint_that_is_down_ends_after_the_attempts_our_options_allow(
    store: Store, request: pytest.FixtureRequest, cli_env: dict[str, str], tmp_path: Path
) -> None:
    name = request.node.callspec.params["store"]
    per_attempt, request_line = DOWN[name]
    with dead_endpoint() as dead:
        env, uri = store.down(dead.url)
        started = time.monotonic()
        proc = mlflow_kserve(["check", "--model-uri", uri, "--fetch-retries", "2", *_dirs(tmp_path)],
                             {**cli_env, **store.env, **env}, timeout=300)  # fmt: skip
        seconds = time.monotonic() - started
    assert proc.returncode == 3, proc.stderr
    assert "after 3 attempts" in last_error(proc) and proc.stderr.count("retrying") == 2
    assert dead.count(request_line) == 3 * per_attempt, dead.requests
    print(f"{name}: down endpoint, --fetch-retries 2: exit 3 after {seconds:.1f} s, {len(dead.requests)} requests")
    # The SDKs' defaults took minutes per attempt (gs:// 3 min); bounded, the whole command takes seconds.
    assert seconds < 150, f"{seconds:.0f} s"


def test_an_abfss_endpoint_that_is_down_is_bounded_too(cli_env: dict[str, str], tmp_path: Path) -> None:
    """abfss:// (ADLS Gen2) has no local server (Azurite has no DFS API), but its SDK's retries are bounded like
    Blob's: MLflow's client goes to https://<account>.<suffix>, here 127.0.0.1:PORT (the account "127")."""
    with dead_endpoint() as dead:
        uri = f"abfss://models@{dead.url.removeprefix('http://')}/plain/{MODEL}"
        env = {**cli_env, "AZURE_STORAGE_SAS_TOKEN": "sv=2024-11-04&sp=rl&sig=c2lnbmF0dXJl"}
        proc = mlflow_kserve(["check", "--model-uri", uri, "--fetch-retries", "2", *_dirs(tmp_path)], env, timeout=300)
    assert proc.returncode == 3, proc.stderr
    assert "after 3 attempts" in last_error(proc)
    assert len(dead.requests) == 3 * (1 + AzureRetries().retry_total), dead.requests
    assert "c2lnbmF0dXJl" not in proc.stderr


def test_the_sdk_bounds_last_only_while_a_fetch_runs(gs_store: Store, wasbs_store: Store, tmp_path: Path) -> None:
    """After a fetch, google-cloud-storage's default retry and MLflow's repository registry are as they were."""
    from google.cloud.storage.retry import DEFAULT_RETRY
    from mlflow.store.artifact.artifact_repository_registry import get_registered_artifact_repositories

    before = (DEFAULT_RETRY._timeout, dict(get_registered_artifact_repositories()))
    for index, store in enumerate((gs_store, wasbs_store)):
        with pytest.MonkeyPatch.context() as patch:
            for key, value in store.env.items():
                patch.setenv(key, value)
            fetch_model(store.uri, tmp_path / str(index))
    assert (DEFAULT_RETRY._timeout, dict(get_registered_artifact_repositories())) == before
    assert before[0] == 120.0  # the SDK's own default, untouched outside a fetch


# Each URI form the store table (docs/stores.md) lists, and the test that proves it (this file or test_fetch.py).
PROVEN = {
    "s3://": "test_check_fetches_and_plans_from_each_store[s3]",
    "gs://": "test_check_fetches_and_plans_from_each_store[gs]",
    "wasbs://": "test_check_fetches_and_plans_from_each_store[wasbs]",
    "http(s)://": "test_check_fetches_and_plans_from_each_store[http]",
    "models:/": "test_check_fetches_and_plans_from_each_store[models]",
    "runs:/": "test_fetch.py::test_registry_version_alias_and_run_uris",
    "file://": "test_fetch.py::test_local_path_and_file_uri",
}


def test_the_docs_list_exactly_the_stores_the_tests_prove() -> None:
    readme = (Path(__file__).resolve().parents[1] / "docs" / "stores.md").read_text()
    table = readme.split("<!-- stores:start -->", 1)[1].split("<!-- stores:end -->", 1)[0]
    rows = [line.split("|")[1] for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]
    listed = {form for row in rows for form in re.findall(r"`([a-z0-9()]+:/{1,2})", row)}
    assert listed == set(PROVEN)
    assert set(STORES) == {"s3", "gs", "wasbs", "http", "models"}
    for scheme in ("abfss://", "wasb://", "abfs://"):  # untested or not served: not in the list
        assert scheme not in table
