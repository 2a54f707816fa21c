"""The two V2 servers side by side from one model venv: MLServer (``<venv>/bin/mlserver start``) and the mlflow
backend (``<venv>/bin/python -m mlflow_kserve_server start`` with this repository's initcontainer/ on PYTHONPATH),
each on free ports; plus `mlflow-kserve init` into a tmp dir, which builds the model's venv as the product does."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from support.cli import mlflow_kserve, wait_ready
from support.services import free_port, stop

ROOT = Path(__file__).resolve().parents[2]
SERVER_PATH = ROOT / "initcontainer"


@dataclass(frozen=True)
class ModelEnv:
    """A model's venv and models dir as `mlflow-kserve init` leaves them."""

    name: str
    python: Path
    models_dir: Path

    @property
    def venv(self) -> Path:
        return self.python.parent.parent


def init_env(model_dir: Path, name: str, work: Path, cache: Path, *extra: str) -> ModelEnv:
    work.mkdir(parents=True, exist_ok=True)
    args = ["init", "--model-uri", str(model_dir), "--name", name, "--env-dir", str(work / "env"),
            "--models-dir", str(work / "models"), "--cache-dir", str(cache), *extra]  # fmt: skip
    proc = mlflow_kserve(args, os.environ)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return ModelEnv(name, work / "env" / "venv" / "bin" / "python", work / "models")


def write_model_settings(models_dir: Path, name: str, model_dir: Path, version: str | None = None) -> None:
    """model-settings.json in init's format (MLServer reads it; so does the mlflow backend)."""
    parameters: dict[str, Any] = {"uri": os.path.relpath(model_dir, models_dir)}
    if version:
        parameters["version"] = version
    settings = {"name": name, "implementation": "mlserver_mlflow.MLflowRuntime", "parameters": parameters}
    models_dir.mkdir(parents=True, exist_ok=True)
    (models_dir / "model-settings.json").write_text(json.dumps(settings))


@dataclass
class Server:
    proc: subprocess.Popen[str]
    url: str
    log: Path
    seconds_to_ready: float = 0.0
    grpc: str | None = None  # host:port of its V2 gRPC service, when it serves one

    def output(self) -> str:
        return self.log.read_text()

    def infer(self, name: str, payload: Any, version: str | None = None) -> requests.Response:
        path = f"/v2/models/{name}" + (f"/versions/{version}" if version else "") + "/infer"
        body = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
        return requests.post(self.url + path, data=body, headers={"content-type": "application/json"}, timeout=120)


def mlflow_backend_command(env: ModelEnv, port: int, *extra: str) -> list[str]:
    return [str(env.python), "-m", "mlflow_kserve_server", "start", str(env.models_dir), "--host", "127.0.0.1",
            "--port", str(port), "--metrics-port", str(free_port()), *extra]  # fmt: skip


def mlflow_backend_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(SERVER_PATH), **extra}


@contextmanager
def mlflow_backend(env: ModelEnv, log: Path, *extra: str, grpc: bool = False) -> Iterator[Server]:
    """The mlflow backend on free ports; ``grpc``: its V2 gRPC service on too."""
    port, grpc_port = free_port(), free_port()
    flags = ("--grpc", "--grpc-port", str(grpc_port)) if grpc else ()
    command = mlflow_backend_command(env, port, *flags, *extra)
    with _started(command, mlflow_backend_env(), port, env.name, log) as server:
        server.grpc = f"127.0.0.1:{grpc_port}" if grpc else None
        yield server


@contextmanager
def mlserver(env: ModelEnv, log: Path, **settings: str) -> Iterator[Server]:
    """``mlserver start`` on ``env.models_dir`` (every model-settings.json under it); ``settings``: more
    ``MLSERVER_*`` variables (e.g. ``MLSERVER_PARALLEL_WORKERS="0"``, as the chart and `run` set it)."""
    port, grpc_port = free_port(), free_port()
    metrics = log.with_suffix(".metrics")
    metrics.mkdir(exist_ok=True)
    variables = {
        **os.environ, "MLSERVER_HOST": "127.0.0.1", "MLSERVER_HTTP_PORT": str(port),
        "MLSERVER_GRPC_PORT": str(grpc_port), "MLSERVER_METRICS_PORT": str(free_port()),
        "MLSERVER_METRICS_DIR": str(metrics), **settings,
    }  # fmt: skip
    with _started(
        [str(env.venv / "bin" / "mlserver"), "start", str(env.models_dir)], variables, port, env.name, log
    ) as s:
        s.grpc = f"127.0.0.1:{grpc_port}"
        yield s


@contextmanager
def _started(command: list[str], env: Mapping[str, str], port: int, name: str, log: Path) -> Iterator[Server]:
    with log.open("w") as out:
        started = time.monotonic()
        proc = subprocess.Popen(command, env=dict(env), stdout=out, stderr=subprocess.STDOUT, text=True,
                                stdin=subprocess.DEVNULL, cwd=log.parent)  # fmt: skip
        server = Server(proc, f"http://127.0.0.1:{port}", log)
        try:
            wait_ready(proc, f"{server.url}/v2/models/{name}", 600, log.read_text)
            server.seconds_to_ready = time.monotonic() - started
            yield server
        finally:
            stop(proc, signal.SIGTERM, 60)


def run_to_exit(command: list[str], env: Mapping[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, env=dict(env), capture_output=True, text=True, timeout=600,
                          stdin=subprocess.DEVNULL, cwd=cwd)  # fmt: skip
