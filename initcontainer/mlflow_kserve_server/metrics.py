"""Prometheus metrics without a package: counters and histograms kept here, written in Prometheus' text
exposition format (version 0.0.4) on their own port.

Families (``model_name`` is the served model's name, as KServe labels its own):

- ``request_predict_seconds{model_name}``: histogram of the time in the model's ``predict``. KServe's model server
  documents this name for the same thing (kserve.github.io/website ``modelserving/observability/
  prometheus_metrics``, "request_predict_seconds: prediction request latency, Histogram"; the code:
  ``python/kserve/kserve/metrics.py`` ``Histogram("request_predict_seconds", "predict request latency",
  ["model_name"])``), so its dashboards read it.
- ``inference_requests_total{model_name,protocol,status}``: V2 infer requests by protocol (rest, grpc) and status
  (the HTTP status code; gRPC answers counted by the HTTP status they correspond to: 200, 400, 404, 413, 500).
- ``inference_request_duration_seconds{model_name,protocol,status}``: histogram of each whole infer request
  (reading, decoding, predict, encoding). KServe documents no name for a request count or latency by status.

Buckets are prometheus_client's defaults (KServe's histograms use them). With several workers, each keeps its own
and the supervising process asks every worker for a snapshot over a pipe when it is scraped and adds them up; a
worker that died and was restarted keeps counting from its last snapshot, so totals only grow.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger("mlflow_kserve_server")

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# name -> (type, help, label names)
FAMILIES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "request_predict_seconds": ("histogram", "predict request latency", ("model_name",)),
    "inference_requests_total": (
        "counter",
        "V2 infer requests by protocol and status",
        ("model_name", "protocol", "status"),
    ),
    "inference_request_duration_seconds": (
        "histogram",
        "V2 infer request latency by protocol and status",
        ("model_name", "protocol", "status"),
    ),
}
# A snapshot: family -> label values -> numbers (a counter: [value]; a histogram: one count per bucket and +Inf,
# not cumulative, then the sum). Plain data, so it crosses a pipe.
Snapshot = dict[str, dict[tuple[str, ...], list[float]]]


class Registry:
    """This process's samples."""

    def __init__(self, model_name: str) -> None:
        self.model_name = model_name
        self._lock = threading.Lock()
        self._samples: Snapshot = {name: {} for name in FAMILIES}

    def observe_predict(self, seconds: float) -> None:
        self._histogram("request_predict_seconds", (self.model_name,), seconds)

    def observe_request(self, protocol: str, status: int, seconds: float) -> None:
        labels = (self.model_name, protocol, str(status))
        with self._lock:
            counter = self._samples["inference_requests_total"].setdefault(labels, [0.0])
            counter[0] += 1
        self._histogram("inference_request_duration_seconds", labels, seconds)

    def _histogram(self, name: str, labels: tuple[str, ...], seconds: float) -> None:
        index = next((i for i, bound in enumerate(BUCKETS) if seconds <= bound), len(BUCKETS))
        with self._lock:
            values = self._samples[name].setdefault(labels, [0.0] * (len(BUCKETS) + 2))
            values[index] += 1
            values[-1] += seconds

    def snapshot(self) -> Snapshot:
        with self._lock:
            return {name: {labels: list(v) for labels, v in samples.items()} for name, samples in self._samples.items()}


def merge(*snapshots: Snapshot) -> Snapshot:
    total: Snapshot = {name: {} for name in FAMILIES}
    for snapshot in snapshots:
        for name, samples in snapshot.items():
            family = total.setdefault(name, {})
            for labels, values in samples.items():
                into = family.setdefault(labels, [0.0] * len(values))
                for i, value in enumerate(values):
                    into[i] += value
    return total


def exposition(snapshot: Snapshot) -> bytes:
    """The Prometheus text format of ``snapshot``."""
    lines: list[str] = []
    for name, (kind, text, label_names) in FAMILIES.items():
        lines.append(f"# HELP {name} {text}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, values in sorted(snapshot.get(name, {}).items()):
            pairs = [f'{key}="{_escape(value)}"' for key, value in zip(label_names, labels, strict=True)]
            if kind == "counter":
                lines.append(f"{name}{{{','.join(pairs)}}} {_number(values[0])}")
                continue
            cumulative = 0.0
            for bound, count in zip((*BUCKETS, float("inf")), values[:-1], strict=True):
                cumulative += count
                le = "+Inf" if bound == float("inf") else repr(bound)
                bucket_labels = ",".join([*pairs, 'le="' + le + '"'])
                lines.append(f"{name}_bucket{{{bucket_labels}}} {_number(cumulative)}")
            lines.append(f"{name}_count{{{','.join(pairs)}}} {_number(cumulative)}")
            lines.append(f"{name}_sum{{{','.join(pairs)}}} {_number(values[-1])}")
    return ("\n".join(lines) + "\n").encode("utf-8")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) else repr(value)


class Exporter:
    """``GET /metrics`` on ``port`` in a thread of this process, answering with ``exposition(collect())``."""

    def __init__(self, host: str, port: int, collect: Callable[[], Snapshot]) -> None:
        handler = _handler(collect)
        self.server = ThreadingHTTPServer((host, port), handler)  # OSError when the port is taken
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="metrics", daemon=True)

    def start(self) -> Exporter:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _handler(collect: Callable[[], Snapshot]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # http.server's name
            if self.path.split("?", 1)[0] not in ("/metrics", "/"):
                self._send(404, b"not found: GET /metrics\n", "text/plain; charset=utf-8")
                return
            try:
                body = exposition(collect())
            except Exception as exc:  # a worker that does not answer: say so, keep serving
                log.error("metrics: %s: %s", type(exc).__name__, exc)
                self._send(500, b"metrics unavailable\n", "text/plain; charset=utf-8")
                return
            self._send(200, body, CONTENT_TYPE)

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # scrapes are not worth a log line each
            pass

    return Handler


def answer_snapshots(connection: Any, registry: Registry) -> threading.Thread:
    """In a worker: a thread that sends ``registry.snapshot()`` back for every request on ``connection`` (the
    supervisor's pipe), until the pipe closes."""

    def loop() -> None:
        while True:
            try:
                connection.recv()
                connection.send(registry.snapshot())
            except (EOFError, OSError):
                return

    thread = threading.Thread(target=loop, name="metrics-pipe", daemon=True)
    thread.start()
    return thread


class WorkerSnapshots:
    """In the supervisor: the sum of every worker's snapshot, each asked over its pipe, plus what workers that were
    restarted had counted (their last snapshot), so the totals never go down."""

    def __init__(self, timeout: float = 5.0) -> None:
        self.timeout = timeout
        self._lock = threading.Lock()
        self._pipes: dict[int, Any] = {}
        self._last: dict[int, Snapshot] = {}
        self._retired: Snapshot = {}

    def attach(self, index: int, connection: Any) -> None:
        """A (re)started worker's pipe; the previous one's last snapshot joins the retired totals."""
        with self._lock:
            if index in self._last:
                self._retired = merge(self._retired, self._last.pop(index))
            self._pipes[index] = connection

    def collect(self) -> Snapshot:
        with self._lock:
            for index, connection in self._pipes.items():
                try:
                    while connection.poll(0):  # a late answer to an earlier scrape that timed out
                        self._last[index] = connection.recv()
                    connection.send(None)
                    if connection.poll(self.timeout):
                        self._last[index] = connection.recv()
                except (EOFError, OSError):  # dying: its last snapshot stands until it is restarted
                    pass
            return merge(self._retired, *self._last.values())
