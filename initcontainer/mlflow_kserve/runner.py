"""``mlflow-kserve run``: the whole pod on one machine. Init into a work dir (the cache there makes the
second run of a model fast), then the server report.json names, from the model's venv on localhost, V2 REST on
--port: MLServer (`mlserver start`), or the mlflow backend (`python -m mlflow_kserve_server start`, MLflow's own
scoring server with the V2 routes, from --env-dir/lib on PYTHONPATH; V2 gRPC on --grpc-port with --grpc, which
MLServer always serves).

The venv is a link into the work dir's cache (``--serve-from-cache``, the default here: a warm start copies
nothing), held in use while the server runs, as the server image does. MLServer runs inference in its own process
(``MLSERVER_PARALLEL_WORKERS=0``, the chart's ``server.workers`` default) unless the environment sets it.

A server that exits before the model is ready (MLServer exits 0 when the model fails to load) makes this runner
exit 8. Ctrl-C / SIGTERM stop the server cleanly.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from mlflow_kserve import pipeline
from mlflow_kserve.cache import serving
from mlflow_kserve.configure import SERVER_PACKAGE
from mlflow_kserve.envdir import claim
from mlflow_kserve.errors import VerifyError
from mlflow_kserve.logs import get_logger
from mlflow_kserve.serving_stack import LABELS
from mlflow_kserve.settings import Settings

READY_TIMEOUT = 600.0
STOP_TIMEOUT = 30.0
log = get_logger()


def default_work_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mlflow-kserve" / "run"


def run(options: dict[str, Any], *, port: int, grpc_port: int, metrics_port: int, work_dir: str | None) -> int:
    work = Path(work_dir).absolute() if work_dir else default_work_dir()
    slot = work / "models" / hashlib.sha256(str(options.get("model_uri")).encode()).hexdigest()[:16]
    settings = Settings.from_options(
        **{**options, "cache_dir": options.get("cache_dir") or str(work / "cache")},
        models_dir=str(slot / "models"),
        env_dir=str(slot / "env"),
    )
    with claim(settings.env_dir):  # held while serving too: a second `run` of this model must not rebuild under it
        report = pipeline.init(settings)
        backend = report["backend"]["name"]
        with serving(settings.venv_dir):
            return serve(settings, slot, backend, port=port, grpc_port=grpc_port, metrics_port=metrics_port)


def server_command(
    settings: Settings, backend: str, run_dir: Path, *, port: int, grpc_port: int, metrics_port: int
) -> tuple[list[str], dict[str, str]]:
    """The command and environment that start ``backend``'s server from the venv, on 127.0.0.1."""
    if backend == "mlflow":
        python = settings.venv_dir / "bin" / "python"
        cmd = [str(python), "-m", SERVER_PACKAGE, "start", str(settings.models_dir), "--host", "127.0.0.1",
               "--port", str(port), "--metrics-port", str(metrics_port)]  # fmt: skip
        if settings.grpc:
            cmd += ["--grpc", "--grpc-port", str(grpc_port)]
        return cmd, {**os.environ, "PYTHONPATH": str(settings.server_lib)}
    metrics = run_dir / "metrics"
    metrics.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "MLSERVER_HOST": "127.0.0.1",
        "MLSERVER_HTTP_PORT": str(port),
        "MLSERVER_GRPC_PORT": str(grpc_port),
        "MLSERVER_METRICS_PORT": str(metrics_port),
        "MLSERVER_METRICS_DIR": str(metrics),
        "MLSERVER_PARALLEL_WORKERS": os.environ.get("MLSERVER_PARALLEL_WORKERS", "0"),
        # MLServer's default debug=true answers an unexpected 500 with a traceback (as the server image sets it)
        "MLSERVER_DEBUG": os.environ.get("MLSERVER_DEBUG", "false"),
    }
    return [str(settings.venv_dir / "bin" / "mlserver"), "start", str(settings.models_dir)], env


def serve(settings: Settings, run_dir: Path, backend: str, *, port: int, grpc_port: int, metrics_port: int) -> int:
    """Start the backend's server, wait for the model to be ready, serve until stopped. Returns the exit code."""
    cmd, env = server_command(settings, backend, run_dir, port=port, grpc_port=grpc_port, metrics_port=metrics_port)
    server = LABELS[backend]
    grpc = f" and grpc://127.0.0.1:{grpc_port}" if settings.grpc or backend == "mlserver" else ""
    log.info("starting %s on http://127.0.0.1:%d%s", server, port, grpc, extra={"step": "serve", "backend": backend})
    proc = subprocess.Popen(cmd, cwd=run_dir, env=env)
    stopping = threading.Event()

    def stop(signum: int, _frame: object) -> None:
        stopping.set()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        ready_url = f"http://127.0.0.1:{port}/v2/models/{settings.name}/ready"
        started = time.monotonic()
        if _wait_ready(proc, ready_url, stopping):
            log.info(
                "ready in %.1fs: POST http://127.0.0.1:%d/v2/models/%s/infer (Ctrl-C stops)",
                time.monotonic() - started, port, settings.name, extra={"step": "serve"},
            )  # fmt: skip
        elif not stopping.is_set():
            code = proc.wait()
            raise VerifyError(
                f"{server} exited (code {code}) before model {settings.name!r} was ready",
                f"see {server}'s log above for the load error",
            )
        while proc.poll() is None:
            time.sleep(0.2)
        if stopping.is_set():
            log.info("stopped", extra={"step": "serve"})
            return 0
        log.error("%s exited unexpectedly (code %s)", server, proc.returncode)
        return proc.returncode or 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _stop(proc)


def _wait_ready(proc: subprocess.Popen[bytes], url: str, stopping: threading.Event) -> bool:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline and proc.poll() is None and not stopping.is_set():
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
