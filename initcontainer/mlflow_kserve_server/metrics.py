"""Prometheus metrics on their own port, only when the model's venv already has ``prometheus_client`` (full
``mlflow`` brings it; ``mlflow-skinny`` does not, and nothing is ever added to the venv for it). The counters are
MLServer's (``model_infer_request_success``, ``model_infer_request_failure``, ``model_infer_request_duration``,
labels ``model`` and ``version``), so the same dashboards read either backend."""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

from mlflow_kserve_server.v2 import Observer

log = logging.getLogger("mlflow_kserve_server")
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's own setting for several processes


def available() -> bool:
    return importlib.util.find_spec("prometheus_client") is not None


def start_exporter(port: int, workers: int) -> Path | None:
    """Serve /metrics on ``port``. With several workers, each worker writes its samples to a shared directory
    (prometheus_client's multiprocess mode, set before the workers start) that this process reads; returns it."""
    from prometheus_client import CollectorRegistry, start_http_server

    directory = None
    registry = None
    if workers > 1:
        from prometheus_client import multiprocess

        directory = Path(tempfile.mkdtemp(prefix="mlflow-kserve-metrics-"))
        os.environ[MULTIPROC_ENV] = str(directory)  # read by prometheus_client in each worker it starts
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(directory))
    start_http_server(port, registry=registry) if registry else start_http_server(port)
    return directory


def remove(directory: Path | None) -> None:
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)


def observer(model: str, version: str | None) -> Observer:
    from prometheus_client import Counter, Summary

    labels = {"model": model, "version": version or ""}
    success = Counter("model_infer_request_success", "Model infer request success count", ["model", "version"])
    failure = Counter("model_infer_request_failure", "Model infer request failure count", ["model", "version"])
    duration = Summary("model_infer_request_duration", "Model infer request duration", ["model", "version"])
    succeeded, failed, seconds = success.labels(**labels), failure.labels(**labels), duration.labels(**labels)

    def observe(ok: bool, elapsed: float) -> None:
        (succeeded if ok else failed).inc()
        seconds.observe(elapsed)

    return observe
