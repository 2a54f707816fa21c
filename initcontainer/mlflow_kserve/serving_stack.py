"""The serving stack table (data in serving_stack.toml): per backend, which rows serve a model of a given MLflow
version on a given serving interpreter, and the packages each row adds (none for the ``mlflow`` backend)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from mlflow_kserve.errors import ResolveError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

BACKENDS = ("mlflow", "mlserver")  # auto's order of preference (docs/backends.md gives the reasons)
LABELS = {"mlserver": "MLServer", "mlflow": "MLflow's scoring server"}


@dataclass(frozen=True)
class ServingStack:
    backend: str  # "mlserver" or "mlflow"
    mlflow: str  # model MLflow versions this row serves, e.g. ">=2.19"
    python: str  # serving interpreters this row supports, e.g. ">=3.9,<3.13"
    requirements: tuple[str, ...]  # added to the model's, e.g. ("mlserver==1.7.1", ...); () for mlflow
    reasons: tuple[str, ...]  # why the pins (mlserver), why the bound (mlflow)
    constraints: tuple[str, ...] = ()  # bounds on packages the model has anyway (applied like --constraint)
    grpc: tuple[str, ...] = ()  # added with --grpc (MLServer serves gRPC with what it brings: none)
    optional: tuple[str, ...] = ()  # added when they resolve with the model's pins, else left out (accelerators)

    def describe(self) -> str:
        """One line for logs and tables: the packages added, or that none is required."""
        if not self.requirements:
            optional = f"; optional {', '.join(self.optional)}" if self.optional else ""
            bounds = f"; constraint {', '.join(self.constraints)}" if self.constraints else ""
            return f"{LABELS[self.backend]} (adds no required package{optional}{bounds})"
        return " ".join(self.requirements)


class NoStack(ResolveError):
    """No row of a backend serves this MLflow version on this interpreter; ``reason`` is the bare cause."""

    def __init__(self, backend: str, reason: str, hint: str) -> None:
        super().__init__(reason, hint)
        self.backend = backend
        self.reason = reason


def load_table() -> list[ServingStack]:
    """The rows of serving_stack.toml, in file order."""
    return list(_table())


@lru_cache(maxsize=1)
def _table() -> tuple[ServingStack, ...]:
    data = tomllib.loads(resources.files("mlflow_kserve").joinpath("serving_stack.toml").read_text())
    rows = []
    for row in data["stack"]:
        stack = ServingStack(
            row["backend"], row["mlflow"], row["python"], tuple(row["requirements"]), tuple(row.get("reasons", ())),
            tuple(row.get("constraints", ())), tuple(row.get("grpc", ())), tuple(row.get("optional", ())),
        )  # fmt: skip
        if stack.backend not in BACKENDS:  # a typo in the table fails here, not per model
            raise ValueError(f"serving_stack.toml: unknown backend {stack.backend!r}")
        SpecifierSet(stack.mlflow), SpecifierSet(stack.python)
        rows.append(stack)
    return tuple(rows)


def supported(backend: str) -> str:
    """The MLflow versions some row of ``backend`` serves, e.g. ">=2.19; >=2.15,<2.19; >=2.10,<2.15"."""
    return "; ".join(row.mlflow for row in _table() if row.backend == backend)


def select_stack(backend: str, mlflow_version: str, interpreter_python: str) -> ServingStack:
    """The row of ``backend`` serving ``mlflow_version`` on ``interpreter_python``; NoStack (exit 6) naming why
    none does."""
    try:
        version = Version(mlflow_version)
    except InvalidVersion as exc:
        raise NoStack(
            backend,
            f"the model's MLflow version {mlflow_version!r} is not a version",
            "fix mlflow_version in MLmodel or the mlflow pin in requirements.txt",
        ) from exc
    for row in _table():
        if row.backend == backend and SpecifierSet(row.mlflow).contains(version, prereleases=True):
            if not SpecifierSet(row.python).contains(interpreter_python, prereleases=True):
                raise NoStack(
                    backend,
                    f"{LABELS[backend]} supports Python {row.python}, the serving interpreter is {interpreter_python}",
                    "use an image of a Python it supports (chart value pythonVersion)",
                )
            return row
    if backend == "mlflow":
        reason = (
            f"MLflow {mlflow_version} has no FastAPI scoring server (the mlflow backend serves MLflow "
            f"{supported('mlflow')})"
        )
    else:
        reason = f"MLServer serves no model logged with MLflow {mlflow_version} (it serves MLflow {supported(backend)})"
    raise NoStack(backend, reason, "log the model again with a supported MLflow version")
