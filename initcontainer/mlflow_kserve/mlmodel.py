"""Read a model's MLmodel file: is it servable (python_function flavor), which MLflow and Python logged it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mlflow_kserve.errors import NotServableError


@dataclass(frozen=True)
class ModelInfo:
    path: Path
    mlflow_version: str | None
    flavors: tuple[str, ...]
    loader_module: str | None
    python_version: str | None
    env: dict[str, str] = field(default_factory=dict)  # python_function.env: {"virtualenv": ..., "conda": ...}
    signature_inputs: list[Any] | None = None
    model_uuid: str | None = None
    run_id: str | None = None


def read_mlmodel(model_dir: Path) -> ModelInfo:
    """Parse ``model_dir/MLmodel``; NotServableError (exit 4) when missing, unreadable or not pyfunc."""
    path = model_dir / "MLmodel"
    if not path.is_file():
        raise NotServableError(
            f"no MLmodel file in the fetched model ({_listing(model_dir)})",
            "point the model URI at the directory that holds MLmodel (the logged model's root)",
        )
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise NotServableError(
            f"MLmodel is not readable YAML ({type(exc).__name__}: {str(exc).splitlines()[0]})",
            "log the model again with MLflow",
        ) from exc
    if not isinstance(data, dict) or not isinstance(data.get("flavors"), dict):
        raise NotServableError("MLmodel has no 'flavors' mapping", "log the model again with MLflow")
    flavors = data["flavors"]
    pyfunc = flavors.get("python_function")
    if not isinstance(pyfunc, dict):
        raise NotServableError(
            f"the model has no python_function flavor (flavors: {', '.join(flavors) or 'none'}); "
            "MLServer serves models through pyfunc",
            "log it with a flavor that supports pyfunc, or wrap it in a mlflow.pyfunc.PythonModel",
        )
    inputs = None
    signature = data.get("signature")
    if isinstance(signature, dict) and isinstance(signature.get("inputs"), str):
        try:
            inputs = json.loads(signature["inputs"])
        except json.JSONDecodeError:
            inputs = None
    version = data.get("mlflow_version")
    python = pyfunc.get("python_version")
    return ModelInfo(
        path=model_dir,
        mlflow_version=str(version) if version else None,
        flavors=tuple(flavors),
        loader_module=pyfunc.get("loader_module"),
        python_version=str(python) if python else None,
        env=_env(pyfunc.get("env")),
        signature_inputs=inputs,
        model_uuid=data.get("model_uuid"),
        run_id=data.get("run_id"),
    )


def _env(value: Any) -> dict[str, str]:
    if isinstance(value, str):  # MLflow < 2 wrote a conda file name only
        return {"conda": value}
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items() if v}
    return {}


def _listing(model_dir: Path) -> str:
    if not model_dir.exists():
        return "nothing was fetched"
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in model_dir.iterdir())
    return "found: " + (", ".join(names[:8]) + (" …" if len(names) > 8 else "") if names else "an empty directory")
