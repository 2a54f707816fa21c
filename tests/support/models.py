"""Real MLflow models for the tests, each built by build_model.py inside a venv with the MLflow and library
versions (and the Python) it is meant to have been logged with. Built once and kept in .cache/test-models (keyed
by the build script, the pins and the Python), so a rerun costs nothing; a file lock makes concurrent test
processes build once.

Besides the session's models (MODELS, built by ``build_all``), some are built on demand with ``build(name)``:
``sklearn-py313`` / ``sklearn-py310``, logged on that Python (found by ``find_python``: the tests skip, naming
it, where the machine has none); ``uv-project``, logged with ``uv run`` from a real uv project (``uv init``,
``uv add mlflow scikit-learn protobuf``): MLflow >= 3.11 writes the project's exported lock as requirements.txt
(a scikit-learn flavor model: MLflow copies no uv.lock into it, only pyfunc models get one); ``sklearn-2024``, an
old model: logged on 2024-02-15 with loose requirements by a builder installed as of that day
(``uv pip install --exclude-newer``, BUILDER_AS_OF); ``asof-probe``, a PythonModel requiring a package of the
tests' own local index (test_asof.py). ``build_uv_locked()`` logs pyfunc models from one uv project, which carry
its uv.lock: ``uv-lock`` (protobuf<7, fastapi<0.116, uvicorn<0.29), ``uv-lock-protobuf7`` (the same project after
``uv add protobuf==7.36.2``) and ``pylock`` (``uv-lock`` with the project's ``uv export --format pylock.toml``
instead of its uv files); ``sklearn-mlflow220``, logged with MLflow 2.20 (the last release whose scoring server is
Flask)."""

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

import pytest
from filelock import FileLock
from mlflow_kserve.tools import uv_binary
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

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
    # MLflow 2.20: the last before the FastAPI scoring server (auto: MLServer 1.7.1)
    "mlflow220": ("mlflow==2.20.3", "scikit-learn==1.5.2", "numpy==1.26.4", "pandas==2.2.3", "cloudpickle"),
    # on other Pythons (BUILDER_PYTHONS): the newest pins that install there
    "mlflow3-py313": ("mlflow==3.17.2", "scikit-learn==1.9.1", "numpy==2.5.5", "cloudpickle"),
    "mlflow3-py310": ("mlflow==3.17.2", "scikit-learn==1.7.2", "numpy==2.2.6", "pandas==2.3.3", "cloudpickle"),
}
BUILDER_PYTHONS = {"mlflow3-py313": "3.13", "mlflow3-py310": "3.10"}
# A builder installed as of a day (uv --exclude-newer): what `pip install mlflow==2.10.2 scikit-learn pandas` gave
# on 2024-02-15 in a Python 3.11 venv (which came with setuptools then: MLflow 2.10 imports pkg_resources). Its
# model says it was logged that day (LOGGED_AT, set through MLflow's Model(utc_time_created)).
BUILDERS["mlflow210-2024"] = ("mlflow==2.10.2", "scikit-learn", "pandas", "cloudpickle", "setuptools")
BUILDER_AS_OF = {"mlflow210-2024": "2024-02-16T00:00:00Z"}
LOGGED_AT = {"mlflow210-2024": "2024-02-15 12:00:00.000000"}
# `uv add` in the uv project: protobuf 7 is what MLServer 1.7.1 refuses (protobuf<7)
UV_PROJECT_ADDS = ("mlflow==3.17.2", "scikit-learn==1.9.1", "protobuf==7.36.2")


@dataclass(frozen=True)
class Spec:
    builder: str  # a BUILDERS key, or "uv-project"
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
# Built on demand (build(name)), not by build_all: they need another Python, or uv and time.
ON_DEMAND: dict[str, Spec] = {
    # logged on Python 3.13: numpy 2.5 needs Python >= 3.12, MLServer needs < 3.13
    "sklearn-py313": Spec("mlflow3-py313", "sklearn-columns"),
    "sklearn-py310": Spec("mlflow3-py310", "sklearn-columns"),
    # logged from a uv project: requirements.txt is its exported lock, protobuf 7 pinned
    "uv-project": Spec("uv-project", "sklearn-columns"),
    # logged on 2024-02-15 with loose requirements, by a builder installed as of that day
    "sklearn-2024": Spec("mlflow210-2024", "sklearn-loose"),
    # needs mlflow-kserve-probe from the tests' local index
    "asof-probe": Spec("mlflow3", "probe"),
    # MLflow 2.20, whose scoring server is still Flask: auto chooses MLServer
    "sklearn-mlflow220": Spec("mlflow220", "sklearn-columns"),
}
# `uv add` in the project build_uv_locked logs from, bounded where our MLServer rows need it (protobuf<7,
# fastapi<0.116, uvicorn<0.29: MLflow 3.17 alone locks newer ones), so both backends serve its lock; then
# protobuf==7.36.2
UV_LOCKED_ADDS = ("mlflow==3.17.2", "scikit-learn==1.9.1", "protobuf<7", "fastapi<0.116", "uvicorn<0.29")


@dataclass(frozen=True)
class BuiltModel:
    name: str
    path: Path  # the model directory (MLmodel at its top)
    expected: dict  # {"kind": "columns"|"tensor", "input": ..., "output": [...], "mlflow": "x.y.z"}


def _python() -> str:
    return getattr(sys, "_base_executable", None) or sys.executable


def find_python(minor: str) -> str | None:
    """An interpreter of Python ``minor`` ("3.13"): under pyenv's root, else on PATH (not a pyenv shim, which
    fails unless that version is selected); None when absent."""
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    candidates = sorted(root.glob(f"versions/{minor}.*/bin/python{minor}"), reverse=True)
    if candidates:
        return str(candidates[0])
    found = shutil.which(f"python{minor}")
    return found if found and "/shims/" not in found else None


def require_python(minor: str) -> str:
    """find_python(minor), or skip the test saying which interpreter is missing."""
    python = find_python(minor)
    if python is None:
        pytest.skip(f"no Python {minor} on this machine (not on PATH as python{minor}, nor under pyenv's versions/)")
    return python


def builder_python(name: str) -> Path:
    interpreter = require_python(BUILDER_PYTHONS[name]) if name in BUILDER_PYTHONS else _python()
    venv = CACHE / "venvs" / f"{name}-{_digest((*BUILDERS[name], *_python_part(name)))}"
    python = venv / "bin" / "python"
    as_of = ["--exclude-newer", BUILDER_AS_OF[name]] if name in BUILDER_AS_OF else []
    with FileLock(str(venv) + ".lock"):
        if not (venv / ".complete").exists():
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([uv_binary(), "venv", "-q", "--python", interpreter, venv], check=True)
            subprocess.run(
                [uv_binary(), "pip", "install", "-q", "--python", python, *as_of, *BUILDERS[name]],
                check=True, timeout=900,
            )  # fmt: skip
            (venv / ".complete").touch()
    return python


def build(name: str) -> BuiltModel:
    spec = MODELS.get(name) or ON_DEMAND[name]
    pins = UV_PROJECT_ADDS if spec.builder == "uv-project" else BUILDERS[spec.builder]
    key = _digest((BUILD_SCRIPT.read_text(), spec.kind, *pins, *_python_part(spec.builder)))
    home = CACHE / "test-models" / f"{name}-{key}"
    model, expected = home / "model", home / "expected.json"
    with FileLock(str(home) + ".lock"):
        if not expected.exists():
            shutil.rmtree(home, ignore_errors=True)
            home.mkdir(parents=True)
            args = [BUILD_SCRIPT, spec.kind, model, expected.with_suffix(".tmp")]
            if spec.builder == "uv-project":
                _log_from_uv_project(home / "project", args)
            else:
                env = {**os.environ, **({"LOGGED_AT": LOGGED_AT[spec.builder]} if spec.builder in LOGGED_AT else {})}
                subprocess.run([builder_python(spec.builder), *args], check=True, timeout=600, cwd=home, env=env)
            expected.with_suffix(".tmp").rename(expected)
    return BuiltModel(name, model, json.loads(expected.read_text()))


def _log_from_uv_project(project: Path, args: list[Path | str]) -> None:
    """What a uv user does: `uv init`, `uv add mlflow scikit-learn protobuf`, then log the model with `uv run`
    from the project folder, where MLflow finds uv.lock and exports it (uv must be on PATH for MLflow)."""
    uv, run = _uv_project(project, "iris-uv")
    subprocess.run([uv, "add", "-q", *UV_PROJECT_ADDS], **run)
    subprocess.run([uv, "run", "-q", "python", *map(str, args)], **run)


def build_uv_locked() -> dict[str, BuiltModel]:
    """Pyfunc models logged from one uv project with MLflow 3.17 (uv.lock, pyproject.toml and .python-version
    among their files): ``uv-lock`` (protobuf<7, fastapi<0.116, uvicorn<0.29: both backends serve it),
    ``uv-lock-protobuf7`` (after ``uv add protobuf==7.36.2``, which MLServer refuses), and ``pylock`` (``uv-lock``
    carrying the project's PEP 751 export instead of its uv files)."""
    home = CACHE / "test-models" / f"uv-locked-{_digest((BUILD_SCRIPT.read_text(), *UV_LOCKED_ADDS))}"
    names = ("uv-lock", "uv-lock-protobuf7", "pylock")
    with FileLock(str(home) + ".lock"):
        if not (home / "pylock" / "expected.json").exists():
            shutil.rmtree(home, ignore_errors=True)
            project = home / "project"
            uv, run = _uv_project(project, "iris-uv-locked")
            subprocess.run([uv, "add", "-q", *UV_LOCKED_ADDS], **run)
            _log_in_project(uv, run, home / "uv-lock")
            export = [uv, "export", "-q", "--frozen", "--no-dev", "--no-emit-project", "--format", "pylock.toml"]
            shutil.copytree(home / "uv-lock", home / "pylock")
            for name in ("uv.lock", "pyproject.toml", ".python-version"):
                (home / "pylock" / "model" / name).unlink(missing_ok=True)
            subprocess.run([*export, "-o", home / "pylock" / "model" / "pylock.toml"], **run)
            subprocess.run([uv, "add", "-q", "protobuf==7.36.2"], **run)
            _log_in_project(uv, run, home / "uv-lock-protobuf7")
    return {name: BuiltModel(name, home / name / "model", json.loads((home / name / "expected.json").read_text()))
            for name in names}  # fmt: skip


def _uv_project(project: Path, name: str) -> tuple[str, dict]:
    uv = uv_binary()
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never", "PATH": f"{Path(uv).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("VIRTUAL_ENV", None)
    run = {"check": True, "timeout": 900, "cwd": project, "env": env}
    project.mkdir(parents=True)
    subprocess.run([uv, "init", "-q", "--app", "--no-workspace", "--vcs", "none", "--python", _python(),
                    "--name", name], **run)  # fmt: skip
    return uv, run


def _log_in_project(uv: str, run: dict, home: Path) -> None:
    home.mkdir(parents=True)
    out = home / "expected.tmp"
    subprocess.run([uv, "run", "-q", "python", BUILD_SCRIPT, "pyfunc-sklearn", home / "model", out], **run)
    out.rename(home / "expected.json")


def build_all(names: list[str] | None = None) -> dict[str, BuiltModel]:
    """Build (or take from the cache) several models at once: the builder venvs install in parallel."""
    names = list(MODELS) if names is None else names
    uv_binary()  # first call initialises sysconfig, which is not thread-safe
    with ThreadPoolExecutor(max_workers=len(BUILDERS)) as pool:
        return dict(zip(names, pool.map(build, names), strict=True))


def _python_part(builder: str) -> tuple[str, ...]:
    """The builder's Python (and the day it is installed as of) in its keys, only where they are not the default
    (the keys of the others stay)."""
    parts = (BUILDER_PYTHONS[builder],) if builder in BUILDER_PYTHONS else ()
    return (*parts, BUILDER_AS_OF[builder], LOGGED_AT[builder]) if builder in BUILDER_AS_OF else parts


def _digest(parts: tuple[str, ...]) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]


def model_pins(model_dir: Path) -> dict[str, str]:
    """The exact pins of the model's requirements.txt that apply on this interpreter (canonical names)."""
    pins = {}
    for line in (model_dir / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        requirement = Requirement(line)
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        specs = list(requirement.specifier)
        if len(specs) == 1 and specs[0].operator == "==":
            pins[canonicalize_name(requirement.name)] = specs[0].version
    return pins
