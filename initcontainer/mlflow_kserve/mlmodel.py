"""Read a model's MLmodel file: is it servable (python_function flavor), which MLflow and Python logged it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mlflow_kserve.errors import NotServableError


class _Loader(yaml.SafeLoader):
    """SafeLoader that keeps floats as text: ``python: 3.10`` is Python 3.10, not the number 3.1."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:float"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_yaml(text: str) -> Any:
    """Parse MLflow's YAML files (MLmodel, python_env.yaml, conda.yaml); raises yaml.YAMLError."""
    return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: no arbitrary objects


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


def read_mlmodel(model_dir: Path) -> ModelInfo:
    """Parse ``model_dir/MLmodel``; NotServableError (exit 4) when missing, unreadable or not pyfunc."""
    path = model_dir / "MLmodel"
    if not path.is_file():
        raise NotServableError(
            f"no MLmodel file in the fetched model ({_listing(model_dir)})",
            "point the model URI at the directory that holds MLmodel (the logged model's root)",
        )
    try:
        data = load_yaml(path.read_text())
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
            f"the model has no python_function flavor (flavors: {', '.join(map(str, flavors)) or 'none'}); "
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
    return ModelInfo(
        path=model_dir,
        mlflow_version=_text(data.get("mlflow_version")),
        flavors=tuple(map(str, flavors)),
        loader_module=_text(pyfunc.get("loader_module")),
        python_version=_text(pyfunc.get("python_version")),
        env=_env(pyfunc.get("env")),
        signature_inputs=inputs if isinstance(inputs, list) else None,
        model_uuid=_text(data.get("model_uuid")),
        run_id=_text(data.get("run_id")),
        artifact_path=_text(data.get("artifact_path")),
        model_id=_text(data.get("model_id")),
    )


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


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
