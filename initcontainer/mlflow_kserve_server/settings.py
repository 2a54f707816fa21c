"""The server's configuration, read once: flags (each also an env var ``MLFLOW_KSERVE_SERVER_<FLAG>``) and the
model's ``model-settings.json`` (MLServer's format, written by ``mlflow-kserve init``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from mlflow_kserve_server.errors import EXIT_CONFIG, StartError

ENV_PREFIX = "MLFLOW_KSERVE_SERVER_"
DEFAULT_MAX_REQUEST_BYTES = 100 * 1024 * 1024


@dataclass(frozen=True)
class Settings:
    models_dir: Path
    host: str = "0.0.0.0"
    port: int = 8080
    workers: int = 1
    metrics_port: int = 8082  # 0: no metrics port
    grpc: bool = False  # V2 gRPC on grpc_port (needs grpcio in the venv: init --grpc adds it)
    grpc_port: int = 8081
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    log_level: str = "info"


@dataclass(frozen=True)
class ModelSettings:
    """What the server needs from model-settings.json: the served name, the model directory, the version."""

    name: str
    path: Path
    version: str | None = None


def read_model_settings(models_dir: Path) -> ModelSettings:
    """Read ``<models_dir>/model-settings.json``; ``parameters.uri`` is relative to that file's folder."""
    file = models_dir / "model-settings.json"
    try:
        raw = json.loads(file.read_text())
    except FileNotFoundError:
        raise StartError(
            f"no {file}: run `mlflow-kserve init --models-dir {models_dir}` first (it writes that file)", EXIT_CONFIG
        ) from None
    except (OSError, ValueError) as exc:
        raise StartError(f"cannot read {file}: {exc}; fix: rerun `mlflow-kserve init`", EXIT_CONFIG) from None
    parameters = raw.get("parameters") if isinstance(raw, dict) else None
    name = raw.get("name") if isinstance(raw, dict) else None
    uri = parameters.get("uri") if isinstance(parameters, dict) else None
    if not isinstance(name, str) or not name or not isinstance(uri, str) or not uri:
        raise StartError(
            f"{file} needs a 'name' and 'parameters.uri' (MLServer's format); fix: rerun `mlflow-kserve init`",
            EXIT_CONFIG,
        )
    version = parameters.get("version")
    path = Path(uri.removeprefix("file://"))
    if not path.is_absolute():
        path = (file.parent / path).resolve()
    return ModelSettings(name=name, path=path, version=None if version in (None, "") else str(version))
