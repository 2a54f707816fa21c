"""Shared fixtures. Everything here is real: a moto S3 server and an `mlflow server` (sqlite registry, artifacts
in that S3) on 127.0.0.1, and MLflow models built in venvs with their own MLflow versions.

- ``s3`` (session): support.services.S3 — ``.endpoint``, ``.bucket``, ``.env`` (for subprocesses),
  ``.upload_dir(path, prefix) -> "s3://bucket/prefix"``.
- ``registry`` (session): support.services.Registry — ``.tracking_uri``, ``.env``.
- ``models`` (session): name -> support.models.BuiltModel (``.path``, ``.expected``) for every model in
  support.models.MODELS.
- ``s3_models`` / ``registry_models`` (session): name -> model URI (s3://… / models:/name@champion).
- ``cli_env``: os.environ + S3 + registry env, for running the mlflow-kserve CLI as a subprocess.
- ``shared_cache`` (session): one --cache-dir for the whole run, so each environment is built once.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.models import MODELS, BuiltModel, build
from support.services import S3, Registry, mlflow_server, moto_s3, register


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
    return {name: build(name) for name in MODELS}


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
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("shared-cache")
