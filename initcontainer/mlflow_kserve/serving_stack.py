"""The serving stack table (data in serving_stack.toml): which MLServer packages serve a model of a given
MLflow version."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from mlflow_kserve.errors import ConfigError, ResolveError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


@dataclass(frozen=True)
class ServingStack:
    mlflow: str  # model MLflow versions this row serves, e.g. ">=2.19"
    requirements: tuple[str, ...]  # e.g. ("mlserver==1.7.1", "mlserver-mlflow==1.7.1", "uvloop<0.22")
    reasons: tuple[str, ...]  # why the extra pins
    python: str  # interpreter versions MLServer supports


def load_table() -> list[ServingStack]:
    """The rows of serving_stack.toml, first match wins."""
    return list(_table())


@lru_cache(maxsize=1)
def _table() -> tuple[ServingStack, ...]:
    data = tomllib.loads(resources.files("mlflow_kserve").joinpath("serving_stack.toml").read_text())
    rows = []
    for row in data["stack"]:
        stack = ServingStack(row["mlflow"], tuple(row["requirements"]), tuple(row.get("reasons", ())), row["python"])
        SpecifierSet(stack.mlflow), SpecifierSet(stack.python)  # a typo in the table fails here, not per model
        rows.append(stack)
    return tuple(rows)


def supported() -> str:
    """The MLflow versions some row serves, e.g. ">=2.19; >=2.15,<2.19; >=2.10,<2.15"."""
    return "; ".join(row.mlflow for row in _table())


def select_stack(mlflow_version: str, interpreter_python: str | None = None) -> ServingStack:
    """The row serving ``mlflow_version``; ResolveError (exit 6) when none does."""
    try:
        version = Version(mlflow_version)
    except InvalidVersion as exc:
        raise ResolveError(
            f"the model's MLflow version {mlflow_version!r} is not a version",
            "fix mlflow_version in MLmodel or the mlflow pin in requirements.txt",
        ) from exc
    for row in _table():
        if SpecifierSet(row.mlflow).contains(version, prereleases=True):
            if interpreter_python and not SpecifierSet(row.python).contains(interpreter_python):
                raise ConfigError(
                    f"MLServer supports Python {row.python}, the serving interpreter is {interpreter_python}",
                    "use an image built for Python 3.10, 3.11 or 3.12 (chart value pythonVersion)",
                )
            return row
    raise ResolveError(
        f"no serving stack for a model logged with MLflow {mlflow_version}; supported MLflow versions: {supported()}",
        "log the model again with a supported MLflow version (2.10 or newer)",
    )
