"""``mlflow-kserve run``: the whole pod on one machine. Init into a work dir (the cache there makes the
second run of a model fast), then the server report.json names, from the model's venv on localhost, V2 REST on
--port: MLServer (`mlserver start`), or the mlflow backend (`python -m mlflow_kserve_server start`, MLflow's own
scoring server with the V2 routes, from --env-dir/lib on PYTHONPATH; V2 gRPC on --grpc-port with --grpc, which
MLServer always serves).

The venv is a link into the work dir's cache (``--serve-from-cache``, the default here: a warm start copies
nothing), held in use while the server runs, as the server image does. MLServer runs inference in its own process
(``MLSERVER_PARALLEL_WORKERS=0``, the chart's ``server.workers`` default) unless the environment sets it.

A port another process listens on exits 2 naming its flag, before anything is fetched or installed (the ports the
chosen backend binds are checked again once it is known). A server that exits before the model is ready (MLServer
exits 0 when the model fails to load) makes this runner exit 8. Ctrl-C / SIGTERM (and SIGHUP: the terminal closed)
stop the server once, and `run` exits 130 / 143 (129) as every command stopped by those signals does.

MLServer is started on a folder named after the model (a link to the models dir): MLServer warns on every start
when a model's name differs from its settings folder's name, and the models dir is always called "models".
"""

from __future__ import annotations

import errno
import hashlib
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from mlflow_kserve import pipeline
from mlflow_kserve.cache import serving
from mlflow_kserve.configure import MLSERVER_LOGGING, SERVER_PACKAGE
from mlflow_kserve.envdir import claim
from mlflow_kserve.errors import ConfigError, VerifyError
from mlflow_kserve.logs import get_logger
from mlflow_kserve.serving_stack import LABELS
from mlflow_kserve.settings import Settings

READY_TIMEOUT = 600.0
STOP_TIMEOUT = 30.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
log = get_logger()


def default_work_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mlflow-kserve" / "run"


def run(options: dict[str, Any], *, port: int, grpc_port: int, metrics_port: int, work_dir: str | None) -> int:
    ports = {"--port": port, "--grpc-port": grpc_port, "--metrics-port": metrics_port}
    # Before anything is fetched: the ports any backend binds, and MLServer's when it is asked for by name.
    first = bound_ports("mlserver", {}) if options.get("backend") == "mlserver" else ["--port"]
    check_ports({flag: ports[flag] for flag in first})
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
        check_ports({flag: ports[flag] for flag in bound_ports(backend, report["packages"])})
        with serving(settings.venv_dir):
            return serve(settings, slot, backend, port=port, grpc_port=grpc_port, metrics_port=metrics_port)


def bound_ports(backend: str, packages: dict[str, str]) -> list[str]:
    """The port flags ``backend``'s server listens on: MLServer all three; the mlflow backend V2 REST, and
    metrics when the venv has prometheus_client (nothing adds it)."""
    if backend == "mlserver":
        return ["--port", "--grpc-port", "--metrics-port"]
    return ["--port", "--metrics-port"] if "prometheus-client" in packages else ["--port"]


def check_ports(ports: dict[str, int]) -> None:
    """ConfigError (2) naming the flag of a port given twice, or one this user cannot listen on at 127.0.0.1
    (another process listens there, or a port below 1024 without the privilege). Bound the way the servers bind
    (SO_REUSEADDR, as uvicorn and gRPC do), so a port left in TIME_WAIT by an earlier run counts as free."""
    seen: dict[int, str] = {}
    for flag, number in ports.items():
        if number in seen:
            raise ConfigError(f"{seen[number]} and {flag} are both {number}", f"give {flag} another port")
        seen[number] = flag
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", number))
            except OSError as exc:
                busy = exc.errno == errno.EADDRINUSE
                cause = "is already in use" if busy else f"cannot be listened on ({exc.strerror})"
                raise ConfigError(
                    f"port {number} ({flag}) {cause} on 127.0.0.1",
                    f"{'stop what listens there, or ' if busy else ''}pass another port: {flag} <port>",
                ) from exc


def mlserver_root(models_dir: Path, run_dir: Path, name: str) -> Path:
    """A folder named ``name`` that is the models dir (a link to it), for `mlserver start`: MLServer compares the
    model's name with its settings folder's name and warns on every start when they differ
    (mlserver/repository/load.py in MLServer 1.7.1); the relative model URI in model-settings.json resolves
    through the link as before."""
    root = run_dir / "by-name" / name
    root.parent.mkdir(parents=True, exist_ok=True)
    if root.is_symlink() or root.exists():
        root.unlink()
    root.symlink_to(models_dir, target_is_directory=True)
    return root


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
    logging_config = settings.env_dir / MLSERVER_LOGGING
    env = {
        **({"MLSERVER_LOGGING_SETTINGS": str(logging_config)} if logging_config.is_file() else {}),
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
    root = mlserver_root(settings.models_dir, run_dir, settings.name)
    return [str(settings.venv_dir / "bin" / "mlserver"), "start", str(root)], env


def serve(settings: Settings, run_dir: Path, backend: str, *, port: int, grpc_port: int, metrics_port: int) -> int:
    """Start the backend's server, wait for the model to be ready, serve until stopped. Returns the exit code."""
    cmd, env = server_command(settings, backend, run_dir, port=port, grpc_port=grpc_port, metrics_port=metrics_port)
    server = LABELS[backend]
    grpc = f" and grpc://127.0.0.1:{grpc_port}" if settings.grpc or backend == "mlserver" else ""
    log.info("starting %s on http://127.0.0.1:%d%s", server, port, grpc, extra={"step": "serve", "backend": backend})
    stopping = threading.Event()
    received: list[int] = []
    started_procs: list[subprocess.Popen[bytes]] = []

    def stop(signum: int, _frame: object) -> None:
        received.append(signum)
        if stopping.is_set():
            return  # told once already (a wrapper such as `make demo` may forward the same Ctrl-C)
        stopping.set()
        for proc in started_procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    # Installed before the server starts, so no signal finds it unprotected. The server runs in a session of its
    # own: Ctrl-C in a terminal reaches run alone, which stops the server once. (Reached by both, MLServer ran its
    # stop twice; a closed terminal, SIGHUP, no longer reaches the server, so run stops it then too.)
    previous = {sig: signal.signal(sig, stop) for sig in STOP_SIGNALS}
    proc: subprocess.Popen[bytes] | None = None
    try:
        proc = subprocess.Popen(cmd, cwd=run_dir, env=env, start_new_session=True)
        started_procs.append(proc)
        if stopping.is_set():
            proc.send_signal(signal.SIGTERM)
        ready_url = f"http://127.0.0.1:{port}/v2/models/{settings.name}/ready"
        started = time.monotonic()
        if _wait_ready(proc, ready_url, stopping):
            grpc = f", gRPC on 127.0.0.1:{grpc_port}" if settings.grpc or backend == "mlserver" else ""
            log.info(
                "ready in %.1fs: POST http://127.0.0.1:%d/v2/models/%s/infer%s (Ctrl-C stops)",
                time.monotonic() - started, port, settings.name, grpc, extra={"step": "serve"},
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
            signum = received[0]
            log.info("stopped by %s", signal.Signals(signum).name, extra={"step": "serve"})
            return 128 + signum  # 130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP, like the other commands
        log.error("%s exited unexpectedly (code %s)", server, proc.returncode)
        return proc.returncode or 1
    finally:
        if proc is not None:
            _stop(proc)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


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
    """SIGTERM, then after STOP_TIMEOUT SIGKILL to the server's whole session (its process group: MLServer's
    inference workers with it)."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
