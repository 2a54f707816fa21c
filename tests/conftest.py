"""Shared fixtures. Everything here is real: a moto S3 server and an `mlflow server` (sqlite registry, artifacts
in that S3) on 127.0.0.1, and MLflow models built in venvs with their own MLflow versions.

- ``s3`` (session) -> support.services.S3: a moto S3 server (``ThreadedMotoServer``, free port) with the bucket
  ``models``. ``.endpoint`` (http://127.0.0.1:PORT), ``.bucket``, ``.env`` (fake AWS credentials, region,
  MLFLOW_S3_ENDPOINT_URL, AWS_ENDPOINT_URL_S3: merge into a subprocess's env), ``.client()`` (boto3),
  ``.upload_dir(path, prefix) -> "s3://models/<prefix>"``. The test process's own os.environ is not changed.
- ``registry`` (session) -> support.services.Registry: ``mlflow server`` from the venv on a free port, sqlite
  backend in a tmp dir, ``--default-artifact-root s3://models/mlartifacts --no-serve-artifacts`` (clients
  read and write the moto bucket directly, as with a real S3 registry); waits for /health. ``.tracking_uri``,
  ``.env`` ({"MLFLOW_TRACKING_URI": ...}).
- ``models`` (session) -> dict[str, support.models.BuiltModel]: every model in support.models.MODELS, built by
  support/build_model.py in a builder venv with that model's MLflow (.cache/venvs/<builder>-<hash>), cached in
  .cache/test-models/<name>-<hash of script + pins>/ (file-locked: concurrent pytest runs build once).
  ``.path`` (MLmodel at its top), ``.expected`` = {"kind": "columns"|"tensor", "input": ..., "output": [...],
  "mlflow": "x.y.z"}: ``output`` is ``mlflow.pyfunc.load_model(path).predict(input)`` in the builder venv.
  Models: sklearn-columns (MLflow 3, named FP64 columns), custom-extra-dep (PythonModel importing `roman`),
  sklearn-mlflow2 (MLflow 2.22, scikit-learn 1.3, NumPy 1.26, tensor signature), sklearn-mlflow216,
  sklearn-mlflow213 (MLflow 2.13), loader-raises (load_context raises; no output).
- ``s3_models`` (session) -> dict[str, str]: name -> "s3://models/plain/<name>" (uploaded with boto3).
- ``registry_models`` (session) -> dict[str, str]: name -> "models:/<name>@champion" (logged as a run's
  artifacts, registered as version 1, alias ``champion``).
- ``cli_env`` (session) -> dict[str, str]: os.environ + S3 + registry env, for running the CLI as a subprocess.
- ``env`` (session) -> dict[str, str]: os.environ + S3 env only (no registry to start).
- ``shared_cache`` (session) -> Path: one --cache-dir (``.cache/env-cache``) shared by every test, every xdist
  worker and later runs (the product's cache is made for replicas sharing it: file locks, publish by rename), so
  each model environment is built once. Tests that assert what the cache does (hits, eviction) use their own.
- ``gcs`` / ``azure`` (session) -> support.emulators.GCS / Azure: gcp-storage-emulator and Azurite's Blob service
  on free ports, bucket/container ``models``; ``.env`` points a client at them (STORAGE_EMULATOR_HOST,
  AZURE_STORAGE_CONNECTION_STRING), ``.upload_dir(path, prefix)`` -> "gs://models/<prefix>" /
  "wasbs://models@devstoreaccount1.blob.core.windows.net/<prefix>".
- ``fetch_log`` -> FetchLog: the fetch step's log records while the test runs (``.retries()``, ``.text()``).
- ``auth_registry`` (session) -> support.services.Registry: a second ``mlflow server``, with MLflow's basic-auth
  app, proxying its artifacts (http:// and mlflow-artifacts:/ URIs); ``.env`` carries the admin's credentials.

Tiers (``pytest_collection_modifyitems`` below): ``e2e`` (slow, marked by hand) and ``network`` (needs the package
index, or builds model environments: every test using ``models`` and the fixtures built on it is marked so
automatically, the rest by hand). ``make unit`` runs neither (CI runs it with no network at all); ``make test`` all.

Every uv the tests start (the CLI's, the builders') shares one download cache, ``.cache/uv`` (set as
``UV_CACHE_DIR`` for the session, as an operator may set it; a test of the product's own cache layout unsets it),
so wheels are downloaded once and hard-linked into each venv.

More in tests/support: variants.py (broken copies of a model: no MLmodel, no python_function flavor, extra
requirement lines, another Python), cli.py (run the CLI, serve with `run`, V2 requests), services.py (also a
credential-checking moto server and an MLflow artifact HTTP server that fails on purpose).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.emulators import GCS, Azure, azurite, gcs_emulator
from support.logs import FetchLog
from support.models import CACHE, BuiltModel, build_all
from support.services import S3, Registry, mlflow_server, moto_s3, register

# Fixtures that build model environments or read the package index: a test using one is in the network tier.
NETWORK_FIXTURES = {"models", "s3_models", "registry_models"}


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("UV_CACHE_DIR", str(CACHE / "uv"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if NETWORK_FIXTURES & set(getattr(item, "fixturenames", ())) and not item.get_closest_marker("e2e"):
            item.add_marker(pytest.mark.network)


@pytest.fixture(scope="session")
def s3() -> Iterator[S3]:
    with moto_s3() as server:
        yield server


@pytest.fixture(scope="session")
def registry(s3: S3, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with mlflow_server(s3, tmp_path_factory.mktemp("mlflow")) as server:
        yield server


@pytest.fixture(scope="session")
def models() -> dict[str, BuiltModel]:
    return build_all()


@pytest.fixture(scope="session")
def s3_models(s3: S3, models: dict[str, BuiltModel]) -> dict[str, str]:
    return {name: s3.upload_dir(model.path, f"plain/{name}") for name, model in models.items()}


@pytest.fixture(scope="session")
def registry_models(registry: Registry, s3: S3, models: dict[str, BuiltModel]) -> dict[str, str]:
    return {name: register(registry, s3, name, model.path) for name, model in models.items()}


@pytest.fixture(scope="session")
def cli_env(s3: S3, registry: Registry) -> dict[str, str]:
    return {**os.environ, **s3.env, **registry.env}


@pytest.fixture(scope="session")
def env(s3: S3) -> dict[str, str]:
    """os.environ + the S3 server's env, for running the CLI without the registry (cli_env starts it too)."""
    return {**os.environ, **s3.env}


@pytest.fixture(scope="session")
def shared_cache() -> Path:
    path = CACHE / "env-cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GCS]:
    with gcs_emulator(tmp_path_factory.mktemp("gcs")) as server:
        yield server


@pytest.fixture(scope="session")
def azure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azure]:
    with azurite(tmp_path_factory.mktemp("azurite")) as server:
        yield server


@pytest.fixture(scope="session")
def auth_registry(s3: S3, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with mlflow_server(s3, tmp_path_factory.mktemp("mlflow-auth"), auth_password="tests-admin-pw") as server:
        yield server


@pytest.fixture
def fetch_log() -> Iterator[FetchLog]:
    """The fetch step's log records (mlflow_kserve's logger does not propagate to pytest's caplog)."""
    handler = FetchLog()
    logger = logging.getLogger("mlflow_kserve")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
