"""The server process: load the model, serve MLflow's app + the V2 routes with uvicorn (and V2 gRPC with
``--grpc``), metrics on their own port, stop on SIGTERM.

One worker runs in this process. With several, this process binds the port and starts one worker process per
``--workers`` (each loads the model and serves the shared socket; with --grpc each also serves the gRPC port,
shared by SO_REUSEPORT) and watches them: a worker that exits before its model loaded stops the server with a
non-zero code (the model cannot load: restarting would loop, which is what uvicorn's own ``--workers`` supervisor
does); one that dies later is restarted. This process then serves the metrics, the sum of every worker's (asked
over a pipe at each scrape: metrics.py). SIGTERM or SIGINT stop every worker gracefully (in-flight requests
finish) and the server exits 0."""

from __future__ import annotations

import logging
import multiprocessing
import signal
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import wait
from typing import Any

from mlflow_kserve_server import metrics
from mlflow_kserve_server.errors import EXIT_CONFIG, EXIT_LOAD, StartError, Stopped
from mlflow_kserve_server.settings import ModelSettings, Settings, read_model_settings

log = logging.getLogger("mlflow_kserve_server")
MIN_MLFLOW = (2, 21)  # mlflow.pyfunc.scoring_server builds a FastAPI app from MLflow 2.21.0 on (mlflow/mlflow#14307)


def start(settings: Settings) -> int:
    """Run the server until it is stopped; the exit code (0: stopped by a signal)."""
    check_mlflow()
    if settings.grpc:
        check_grpc()
    model_settings = read_model_settings(settings.models_dir)
    if settings.workers == 1:
        registry = metrics.Registry(model_settings.name) if settings.metrics_port else None
        exporter = _exporter(settings, registry.snapshot) if registry else None
        try:
            return _serve(settings, model_settings, time.monotonic(), registry=registry)
        finally:
            if exporter:
                exporter.stop()
    return _supervise(settings, model_settings)


def check_mlflow() -> None:
    from mlflow.version import VERSION

    release = tuple(int(p) for p in VERSION.split(".")[:2] if p.isdigit())
    if release < MIN_MLFLOW:
        raise StartError(
            f"this venv has MLflow {VERSION}, whose scoring server is Flask: the mlflow backend needs MLflow >= "
            f"{'.'.join(map(str, MIN_MLFLOW))}.0 (its FastAPI scoring server); fix: serve this model with "
            "--backend mlserver",
            EXIT_CONFIG,
        )


def check_grpc() -> None:
    import importlib.util

    if importlib.util.find_spec("grpc") is None:
        raise StartError(
            "--grpc: the model's venv has no grpcio; fix: init the model with --grpc (MLFLOW_KSERVE_GRPC=true, chart "
            "server.grpc.enabled), which adds it, or serve without --grpc",
            EXIT_CONFIG,
        )


def _exporter(settings: Settings, collect: Callable[[], metrics.Snapshot]) -> metrics.Exporter:
    exporter = metrics.Exporter(settings.host, settings.metrics_port, collect).start()
    log.info("metrics on http://%s:%d/metrics", settings.host, settings.metrics_port)
    return exporter


def _serve(
    settings: Settings,
    model_settings: ModelSettings,
    started: float,
    sockets: list[Any] | None = None,
    on_ready: Callable[[], Any] | None = None,
    registry: metrics.Registry | None = None,
) -> int:
    """Load the model and serve it in this process (on ``sockets`` when given) until a signal stops uvicorn."""
    import uvicorn

    from mlflow_kserve_server.app import build_app
    from mlflow_kserve_server.dataplane import DataPlane
    from mlflow_kserve_server.model import load

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _interrupt)  # a stop while the model loads: like Ctrl-C, exit 0
    try:
        served = load(model_settings)
    except KeyboardInterrupt:  # Stopped, or a Ctrl-C that arrived before the handlers above
        log.info("stopped before the model was loaded")
        return 0
    plane = DataPlane(served, registry.observe_predict if registry else None)
    observe = registry.observe_request if registry else None
    app = build_app(plane, settings.max_request_bytes, observe)
    grpc = None
    if settings.grpc:
        from mlflow_kserve_server import grpc_server

        grpc = grpc_server.start(plane, settings.host, settings.grpc_port, settings.max_request_bytes, observe)
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, log_config=None, access_log=False, log_level=settings.log_level,
        timeout_keep_alive=65,
    )  # fmt: skip

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets=sockets)
            if not self.started:
                return
            if on_ready is not None:
                on_ready()
            else:
                log.info(
                    "ready in %.2f s: model %s, V2 on http://%s:%d%s",
                    time.monotonic() - started, model_settings.name, settings.host, settings.port, _grpc_note(settings),
                )  # fmt: skip

    server = Server(config)
    _quiet_signals()
    try:
        server.run(sockets=sockets)
    finally:
        if grpc is not None:
            grpc.stop(grace=10).wait()
    if not server.started:
        return 1
    if on_ready is None:
        log.info("stopped")
    return 0


def _grpc_note(settings: Settings) -> str:
    return f" and grpc://{settings.host}:{settings.grpc_port}" if settings.grpc else ""


def _interrupt(signum: int, _frame: Any) -> None:
    raise Stopped


def _quiet_signals() -> None:
    """uvicorn stops gracefully on SIGTERM/SIGINT, then raises the signal again with the handler it found: with
    these, that second raise does nothing and the process exits 0 (Python's defaults would kill it, or raise
    KeyboardInterrupt)."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)


def _worker(settings: Settings, model_settings: ModelSettings, sock: Any, pipe: Any, ready: Any) -> None:
    """A worker process: the model and one uvicorn server on the socket the supervisor bound; its metrics go to
    the supervisor over ``pipe``."""
    from mlflow_kserve_server.cli import setup_logging

    setup_logging(settings.log_level)
    registry = None
    if pipe is not None:
        registry = metrics.Registry(model_settings.name)
        metrics.answer_snapshots(pipe, registry)
    try:
        code = _serve(settings, model_settings, time.monotonic(), [sock], ready.set, registry)
    except StartError as exc:
        print(f"mlflow-kserve-server: error: {exc}", file=sys.stderr, flush=True)
        code = exc.exit_code
    except OSError as exc:  # e.g. the gRPC port is taken
        print(f"mlflow-kserve-server: error: {exc}", file=sys.stderr, flush=True)
        code = EXIT_CONFIG
    sys.exit(code)


class _Worker:
    def __init__(
        self, index: int, target: Any, args: tuple[Any, ...], context: Any, snapshots: metrics.WorkerSnapshots | None
    ) -> None:
        self.index, self.target, self.args, self.context, self.snapshots = index, target, args, context, snapshots
        self.ready = context.Event()
        self.logged_ready = False
        self.process = self._spawn()

    def _spawn(self) -> Any:
        pipe = None
        if self.snapshots is not None:
            mine, pipe = self.context.Pipe()
            self.snapshots.attach(self.index, mine)
        process = self.context.Process(
            target=self.target, args=(*self.args, pipe, self.ready), name=f"worker-{self.index}", daemon=False
        )
        process.start()
        if pipe is not None:
            pipe.close()  # the worker's end lives in the worker
        return process

    def restart(self) -> None:
        self.process = self._spawn()


def _supervise(settings: Settings, model_settings: ModelSettings) -> int:
    import uvicorn

    started = time.monotonic()
    sock = uvicorn.Config(app=None, host=settings.host, port=settings.port).bind_socket()
    context = multiprocessing.get_context("spawn")
    stopping: list[int] = []

    def stop(signum: int, _frame: Any) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    args = (settings, model_settings, sock)
    snapshots = metrics.WorkerSnapshots() if settings.metrics_port else None
    exporter = _exporter(settings, snapshots.collect) if snapshots else None
    workers = [_Worker(i, _worker, args, context, snapshots) for i in range(1, settings.workers + 1)]
    all_ready = False
    code = 0
    while not stopping:
        wait([w.process.sentinel for w in workers], timeout=0.5)
        for worker in workers:
            if worker.ready.is_set() and not worker.logged_ready:
                worker.logged_ready = True
            if worker.process.is_alive() or stopping:
                continue
            if not worker.logged_ready and not worker.ready.is_set():
                log.error("worker %d exited (code %s) before its model was ready: stopping", worker.index,
                          worker.process.exitcode)  # fmt: skip
                code = worker.process.exitcode if (worker.process.exitcode or 0) > 0 else EXIT_LOAD
                stopping.append(0)
                break
            log.warning("worker %d died (code %s): restarting it", worker.index, worker.process.exitcode)
            worker.ready.clear()
            worker.logged_ready = False
            worker.restart()
        if not all_ready and all(w.logged_ready for w in workers):
            all_ready = True
            log.info(
                "ready in %.2f s: model %s, V2 on http://%s:%d%s, %d workers",
                time.monotonic() - started, model_settings.name, settings.host, settings.port, _grpc_note(settings),
                len(workers),
            )  # fmt: skip
    for worker in workers:
        if worker.process.is_alive():
            worker.process.terminate()  # SIGTERM: uvicorn finishes in-flight requests
    for worker in workers:
        worker.process.join(timeout=60)
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join()
    sock.close()
    if exporter:
        exporter.stop()
    if code == 0:
        log.info("stopped")
    return code
