"""Step 6: the files the server container reads: model-settings.json (MLServer reads it, and so does the mlflow
backend's V2 server), the V2 server package for the mlflow backend or the MLflow runtime MLServer runs (both copied
before verify, which imports them), and report.json (what was installed, how long each step took). report.json is
written last: its presence means init completed."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path
from typing import Any

from mlflow_kserve import procs
from mlflow_kserve.errors import ConfigError, InstallError
from mlflow_kserve.files import remove, write_atomic

SERVER_PACKAGE = "mlflow_kserve_server"
RUNTIME_PACKAGE = "mlflow_kserve_mlserver"
# the runtime MLServer loads the model with: ours (mlserver-mlflow's, fixed for V2 clients) under the mlserver
# backend; the mlflow backend reads only the name and uri
RUNTIMES = {"mlserver": f"{RUNTIME_PACKAGE}.runtime.MLflowRuntime", "mlflow": "mlserver_mlflow.MLflowRuntime"}
# MLServer's logging config (MLSERVER_LOGGING_SETTINGS), in the env dir; `run` and the server image point MLServer at
# it unless the environment names its own. MLServer runs two uvicorn servers (REST and metrics), each logging the same
# start and stop lines ("Started server process", "Application startup complete", "Shutting down", ...) beside
# MLServer's own ("HTTP server running on ...", "Metrics server running on ..."): uvicorn keeps its warnings and
# errors, its access log included (MLServer's default, MLSERVER_DEBUG=true, logs every request, readiness probes
# too; the mlflow backend logs none). MLServer's own "mlserver" logger is not touched (it adds its handler itself).
MLSERVER_LOGGING = "mlserver-logging.json"
MLSERVER_LOG_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s [%(name)s] %(levelname)s - %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"}},
    "loggers": {
        "uvicorn": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
        "uvicorn.error": {"level": "WARNING"},
        "uvicorn.access": {"level": "WARNING"},
    },
}


def write_json(path: Path, payload: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(payload, indent=2, sort_keys=False) + "\n")


def model_settings(
    name: str,
    model_dir: Path,
    models_dir: Path,
    *,
    backend: str = "mlserver",
    max_batch_size: int = 0,
    max_batch_time: float = 0.0,
) -> dict[str, Any]:
    """MLServer resolves a relative ``uri`` against the settings file's folder: the same file works in the
    pod (/mnt/models) and under `mlflow-kserve run`'s work dir. Adaptive batching is on when
    ``max_batch_size`` > 1 (MLServer's own rule); MLServer's defaults apply otherwise. The mlflow backend reads
    name and uri too."""
    uri = os.path.relpath(model_dir, models_dir)
    settings: dict[str, Any] = {
        "name": name,
        "implementation": RUNTIMES[backend],
        "parameters": {"uri": f"./{uri}"},
    }
    if max_batch_size > 1:
        settings["max_batch_size"] = max_batch_size
        settings["max_batch_time"] = max_batch_time
    return settings


def write_server_package(lib: Path, python: str) -> Path:
    """Copy the mlflow backend's V2 server (installed beside this package, from the same source tree) to
    ``lib/mlflow_kserve_server`` with its bytecode, compiled by the serving interpreter. It is put on PYTHONPATH
    when the server starts, never installed into the venv: the venv holds the model's packages only."""
    return _write_package(SERVER_PACKAGE, lib, python, "or use --backend mlserver")


def write_mlserver_runtime(models_dir: Path, python: str) -> Path:
    """Copy the MLflow runtime MLServer runs (``mlflow_kserve_mlserver``) next to model-settings.json, compiled by
    the serving interpreter: MLServer imports a model's ``implementation`` with that folder on ``sys.path``
    (SeldonIO/MLServer 1.7.1 and 1.6.1, ``mlserver/settings.py`` ``ModelSettings.implementation``), so nothing is
    installed into the venv."""
    return _write_package(RUNTIME_PACKAGE, models_dir, python, "or use --backend mlflow")


def _write_package(package: str, parent: Path, python: str, instead: str) -> Path:
    spec = importlib.util.find_spec(package)  # finds it without importing it here
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"the package {package} is not installed beside mlflow_kserve",
            f"reinstall mlflow-kserve (the init image ships it), {instead}",
        )
    source = Path(next(iter(spec.submodule_search_locations)))
    dest = parent / package
    tmp = parent / f".{package}.tmp"
    remove(tmp)
    shutil.copytree(source, tmp, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    # -d: tracebacks name the final path, not the temporary one
    compiled = procs.run([python, "-m", "compileall", "-q", "-d", dest, tmp], env={"PYTHONDONTWRITEBYTECODE": ""})
    if compiled.returncode != 0:
        raise InstallError(f"cannot compile {package} with {python}: {compiled.output[-300:]}")
    remove(dest)
    os.replace(tmp, dest)
    return dest
