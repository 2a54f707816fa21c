"""Read a model's MLmodel file: is it servable (python_function flavor), which MLflow and Python logged it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from mlflow_kserve.errors import NotServableError
from mlflow_kserve.modelfiles import (
    check_shape,
    inside,
    listing,
    load_yaml,
    models_inside,
    present,
    quote,
    read_yaml,
    shorten,
    type_name,
)

__all__ = ["ModelInfo", "load_yaml", "read_mlmodel"]


@dataclass(frozen=True)
class ModelInfo:
    path: Path
    mlflow_version: str | None  # MLmodel's top-level mlflow_version
    flavors: tuple[str, ...]
    loader_module: str | None  # python_function.loader_module
    python_version: str | None  # python_function.python_version
    env: dict[str, str] = field(default_factory=dict)  # python_function.env: {"virtualenv": ..., "conda": ...}
    signature_inputs: list[Any] | None = None  # the signature's inputs, parsed from their JSON text
    model_uuid: str | None = None
    run_id: str | None = None
    artifact_path: str | None = None
    model_id: str | None = None  # MLflow 3 logged models
    utc_time_created: str | None = None  # when the model was logged ("2024-02-15 10:11:12.123456", UTC)


def read_mlmodel(model_dir: Path) -> ModelInfo:
    """Parse ``model_dir/MLmodel``; NotServableError (exit 4) when missing, unreadable or not pyfunc."""
    if not model_dir.is_dir() or not present(model_dir, "MLmodel"):
        raise no_mlmodel(model_dir, "the fetched model")
    data = read_yaml(model_dir, "MLmodel")
    if not isinstance(data.get("flavors"), dict):
        raise NotServableError("MLmodel has no 'flavors' mapping", "log the model again with MLflow")
    flavors = data["flavors"]
    pyfunc = flavors.get("python_function")
    if not isinstance(pyfunc, dict):
        names = shorten(", ".join(map(str, flavors)) or "none")
        raise NotServableError(
            f"the model has no python_function flavor (flavors: {names}); MLServer serves models through pyfunc",
            "log it with a flavor that supports pyfunc, or wrap it in a mlflow.pyfunc.PythonModel",
        )
    mlflow_version = _text(data, "mlflow_version")
    if mlflow_version is not None:
        _check_version(mlflow_version)
    return ModelInfo(
        path=model_dir,
        mlflow_version=mlflow_version,
        flavors=tuple(map(str, flavors)),
        loader_module=_text(pyfunc, "loader_module", "python_function."),
        python_version=_text(pyfunc, "python_version", "python_function."),
        env=_env(model_dir, pyfunc.get("env")),
        signature_inputs=_signature_inputs(data.get("signature")),
        model_uuid=_text(data, "model_uuid"),
        run_id=_text(data, "run_id"),
        artifact_path=_text(data, "artifact_path"),
        model_id=_text(data, "model_id"),
        utc_time_created=_text(data, "utc_time_created"),
    )


def _text(data: dict[str, Any], key: str, prefix: str = "") -> str | None:
    """A scalar of MLmodel as text; a list or mapping where MLflow writes text is not MLflow's MLmodel."""
    value = data.get(key)
    if isinstance(value, (dict, list)):
        raise NotServableError(
            f"MLmodel's {prefix}{key} is a {type_name(value)}, not text", "log the model again with MLflow"
        )
    return str(value) if value not in (None, "") else None


def _check_version(text: str) -> None:
    try:
        Version(text)
    except InvalidVersion as exc:
        raise NotServableError(
            f"MLmodel's mlflow_version {quote(text)} is not a version", "log the model again with MLflow"
        ) from exc


def _signature_inputs(signature: Any) -> list[Any] | None:
    """The signature's inputs (JSON text inside the YAML), or None when absent or not a JSON list."""
    if not isinstance(signature, dict) or not isinstance(signature.get("inputs"), str):
        return None
    try:
        inputs = json.loads(signature["inputs"])
    except (json.JSONDecodeError, RecursionError):
        return None
    if not isinstance(inputs, list):
        return None
    check_shape(inputs, "MLmodel's signature")
    return inputs


def _env(model_dir: Path, value: Any) -> dict[str, str]:
    """python_function.env: file names of the environment files (anything but text is ignored), each inside
    the model directory: a model naming /etc/shadow as its conda file is refused, read or not."""
    if isinstance(value, str):  # MLflow < 2 wrote a conda file name only
        value = {"conda": value}
    if not isinstance(value, dict):
        return {}
    env = {str(k): v for k, v in value.items() if isinstance(v, str) and v}
    for key, name in env.items():
        inside(model_dir, name, f"MLmodel's python_function.env.{key}")
    return env


def no_mlmodel(folder: Path, where: str, uri: str | None = None) -> NotServableError:
    """Exit 4 for a folder without MLmodel (``where`` names it): what it holds, and the models inside it, if any.
    With a path or store ``uri`` and exactly one model inside, the fix is that model's URI."""
    if not folder.is_dir():
        return NotServableError(
            f"no MLmodel file in {where} (nothing was fetched)",
            "point the model URI at the directory that holds MLmodel (the logged model's root)",
        )
    models = models_inside(folder)
    found = f"; a model inside it: {', '.join(models)}" if models else ""
    fix = "point the model URI at the directory that holds MLmodel (the logged model's root)"
    if uri and len(models) == 1 and not uri.startswith(("models:", "runs:")):
        fix = f"point the model URI at the directory that holds MLmodel: {uri.rstrip('/')}/{models[0].rstrip('/')}"
    return NotServableError(f"no MLmodel file in {where} ({listing(folder)}{found})", fix)
