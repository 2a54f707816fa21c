"""Run the mlflow-kserve CLI as users do: a subprocess, configured by flags and env."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from support.services import free_port, stop

MLFLOW_KSERVE = str(Path(sys.executable).with_name("mlflow-kserve"))
SHUTDOWN_LINES = 8  # at most what a stopped server, then `run` after it, print: one line per event


def mlflow_kserve(args: list[str], env: Mapping[str, str], timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MLFLOW_KSERVE, *args], env=dict(env), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def last_error(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if "error:" in ln]
    return lines[-1] if lines else proc.stderr[-2000:]


class Served:
    """A running ``mlflow-kserve run``: its process and base URL."""

    def __init__(self, proc: subprocess.Popen[str], port: int, name: str, log: Path, grpc_port: int = 0) -> None:
        self.proc, self.port, self.name, self.log, self.grpc_port = proc, port, name, log, grpc_port
        self.url = f"http://127.0.0.1:{port}"
        self.stopped_at = 0  # characters of output before the stop signal was sent

    def infer(self, payload: dict[str, Any]) -> dict[str, Any]:
        response = requests.post(f"{self.url}/v2/models/{self.name}/infer", json=payload, timeout=60)
        assert response.status_code == 200, response.text
        return response.json()

    def output(self) -> str:
        return self.log.read_text()

    def shutdown_lines(self) -> list[str]:
        """What the run printed after it was told to stop."""
        return self.output()[self.stopped_at :].splitlines()


@contextmanager
def served(
    args: list[str], env: Mapping[str, str], port: int, name: str, log: Path, stop_signal: int = signal.SIGINT
) -> Iterator[Served]:
    """Start ``mlflow-kserve run``, wait for /v2/models/<name>/ready, stop it with ``stop_signal`` afterwards:
    SIGINT as Ctrl-C in a terminal sends it, to every process of the group (`run` then exits 130); SIGTERM as
    kill or a supervisor sends it, to `run` alone (143)."""
    grpc_port = free_port()
    with log.open("w") as fh:
        proc = subprocess.Popen(
            [MLFLOW_KSERVE, "run", "--port", str(port), "--grpc-port", str(grpc_port), "--metrics-port",
             str(free_port()), "--name", name, *args],  # each port free on its own: port + 1 may be another's
            env=dict(env), stdout=fh, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL,
            start_new_session=True,  # a process group of its own, as a shell gives a command
        )  # fmt: skip
        server = Served(proc, port, name, log, grpc_port)
        try:
            wait_ready(proc, f"{server.url}/v2/models/{name}", 600, log.read_text)
            yield server
        finally:
            server.stopped_at = len(log.read_text())
            if stop_signal == signal.SIGINT and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)  # the terminal's Ctrl-C: the whole foreground group
            stop(proc, stop_signal, 60)


def wait_ready(proc: subprocess.Popen[str], model_url: str, seconds: float, output: Callable[[], str]) -> None:
    """Poll ``<model_url>/ready`` until MLServer answers 200; fail with ``output()`` if ``proc`` exits first."""
    deadline = time.monotonic() + seconds
    while not _ready(f"{model_url}/ready"):
        assert proc.poll() is None, f"exited {proc.returncode}: {output()[-3000:]}"
        assert time.monotonic() < deadline, f"not ready in {seconds:.0f} s"
        time.sleep(0.3)


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def v2_request(expected: Mapping[str, Any]) -> dict[str, Any]:
    """The V2 request for a built model's example input: one FP64 input per named column, or one tensor."""
    if expected["kind"] == "columns":
        inputs = [
            {"name": column, "shape": [len(values)], "datatype": "FP64", "data": values}
            for column, values in expected["input"].items()
        ]
    else:
        rows = expected["input"]
        inputs = [
            {"name": "input-0", "shape": [len(rows), len(rows[0])], "datatype": "FP64",
             "data": [v for row in rows for v in row]}
        ]  # fmt: skip
    return {"inputs": inputs}


def report(env_dir: Path) -> dict[str, Any]:
    return json.loads((env_dir / "report.json").read_text())


def assert_one_line_per_event(server: Served, signal_name: str, *, whole_log: bool = True) -> None:
    """One line per event: the log repeats no line (timestamps aside; ``whole_log=False`` when several processes
    each log their own, as MLServer's inference workers do: then the shutdown only), MLServer does not warn about
    its settings folder's name, and the shutdown is a handful of lines, each once, ending with run's own."""
    lines = [_event(line) for line in server.output().splitlines() if line.strip()]
    assert not any("is different than model's folder name" in line for line in lines)
    shutdown = [_event(line) for line in server.shutdown_lines() if line.strip()]
    checked = lines if whole_log else shutdown
    repeated = sorted({line for line in checked if checked.count(line) > 1})
    assert repeated == [], repeated
    assert len(shutdown) <= SHUTDOWN_LINES, shutdown
    assert shutdown[-1].endswith(f"[serve] stopped by {signal_name}"), shutdown


def _event(line: str) -> str:
    """A log line without its timestamp and process id: what happened, to compare lines."""
    line = re.sub(r"^\d{4}-\d\d-\d\d[ T][\d:.,]+\s*", "", line.strip())
    return re.sub(r"\[\d+\]", "[pid]", line)
