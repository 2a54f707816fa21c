"""Real MLflow models for the tests, each built by build_model.py inside a venv with the MLflow and library
versions it is meant to have been logged with. Built once and kept in .cache/test-models (keyed by the build
script and the pins), so a rerun costs nothing; a file lock makes concurrent test processes build once."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock
from mlflow_kserve.tools import uv_binary

ROOT = Path(__file__).resolve().parents[2]
# MLFLOW_KSERVE_TEST_CACHE moves the builder venvs and built models elsewhere (e.g. to time a cold build).
CACHE = Path(os.environ.get("MLFLOW_KSERVE_TEST_CACHE") or ROOT / ".cache")
BUILD_SCRIPT = Path(__file__).with_name("build_model.py")

# builder venv -> pins. Each model below names the builder whose MLflow logged it.
BUILDERS: dict[str, tuple[str, ...]] = {
    "mlflow3": ("mlflow==3.17.2", "scikit-learn==1.9.1", "roman==5.2", "cloudpickle"),
    "mlflow2": ("mlflow==2.22.4", "scikit-learn==1.3.2", "numpy==1.26.4", "pandas==2.2.3", "cloudpickle"),
    "mlflow216": (
        "mlflow==2.16.2",
        "scikit-learn==1.5.2",
        "numpy==1.26.4",
        "pandas==2.2.3",
        "cloudpickle",
        "setuptools<82",
    ),
    "mlflow213": (
        "mlflow==2.13.2",
        "scikit-learn==1.3.2",
        "numpy==1.26.4",
        "pandas==2.1.4",
        "cloudpickle",
        "setuptools<82",
    ),
}


@dataclass(frozen=True)
class Spec:
    builder: str
    kind: str  # a KINDS key of build_model.py


MODELS: dict[str, Spec] = {
    # MLflow 3.x, scikit-learn, named FP64 columns
    "sklearn-columns": Spec("mlflow3", "sklearn-columns"),
    # custom PythonModel importing `roman`, which no serving stack brings
    "custom-extra-dep": Spec("mlflow3", "custom-extra-dep"),
    # MLflow 2.22 (>= 2.19) with older scikit-learn / NumPy pins, tensor signature
    "sklearn-mlflow2": Spec("mlflow2", "sklearn-tensor"),
    # MLflow 2.16: the 2.15–2.18 row (mlserver 1.6.1)
    "sklearn-mlflow216": Spec("mlflow216", "sklearn-columns"),
    # MLflow 2.13: the 2.10–2.14 row (mlserver 1.6.1 + setuptools<82)
    "sklearn-mlflow213": Spec("mlflow213", "sklearn-columns"),
    # loads nowhere: its load_context raises
    "loader-raises": Spec("mlflow3", "loader-raises"),
}


@dataclass(frozen=True)
class BuiltModel:
    name: str
    path: Path  # the model directory (MLmodel at its top)
    expected: dict  # {"kind": "columns"|"tensor", "input": ..., "output": [...], "mlflow": "x.y.z"}


def _python() -> str:
    return getattr(sys, "_base_executable", None) or sys.executable


def builder_python(name: str) -> Path:
    venv = CACHE / "venvs" / f"{name}-{_digest(BUILDERS[name])}"
    python = venv / "bin" / "python"
    with FileLock(str(venv) + ".lock"):
        if not (venv / ".complete").exists():
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([uv_binary(), "venv", "-q", "--python", _python(), venv], check=True)
            subprocess.run(
                [uv_binary(), "pip", "install", "-q", "--python", python, *BUILDERS[name]], check=True, timeout=900
            )
            (venv / ".complete").touch()
    return python


def build(name: str) -> BuiltModel:
    spec = MODELS[name]
    key = _digest((BUILD_SCRIPT.read_text(), spec.kind, *BUILDERS[spec.builder]))
    home = CACHE / "test-models" / f"{name}-{key}"
    model, expected = home / "model", home / "expected.json"
    with FileLock(str(home) + ".lock"):
        if not expected.exists():
            shutil.rmtree(home, ignore_errors=True)
            home.mkdir(parents=True)
            python = builder_python(spec.builder)
            subprocess.run(
                [python, BUILD_SCRIPT, spec.kind, model, expected.with_suffix(".tmp")],
                check=True, timeout=600, cwd=home,
            )  # fmt: skip
            expected.with_suffix(".tmp").rename(expected)
    return BuiltModel(name, model, json.loads(expected.read_text()))


def build_all(names: list[str] | None = None) -> dict[str, BuiltModel]:
    """Build (or take from the cache) several models at once: the builder venvs install in parallel."""
    names = list(MODELS) if names is None else names
    uv_binary()  # first call initialises sysconfig, which is not thread-safe
    with ThreadPoolExecutor(max_workers=len(BUILDERS)) as pool:
        return dict(zip(names, pool.map(build, names), strict=True))


def _digest(parts: tuple[str, ...]) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]
