"""MLServer's inference workers (MLSERVER_PARALLEL_WORKERS), measured in one run (not a test): time to ready,
the server's memory after ready (RSS of MLServer and every process it started), and 1,000 V2 requests
(throughput, latency). Configurations alternate, so drift on a shared machine hits each alike.

    .venv/bin/python benchmarks/workers.py [--model DIR] [--rounds 2] [--requests 1000] [--concurrency 4]

The environment is built once with `mlflow-kserve init` (warm bytecode, as a pod serves it); each start is
`mlserver start` from that venv, as the server image's entrypoint runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from support import BIN, ROOT, Server, train_iris

CONFIGS = {"default (1 worker)": None, "0 (inference in the server process)": "0"}


def post(url: str, body: bytes) -> float:
    start = time.perf_counter()
    request = urllib.request.Request(url, data=body, headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        response.read()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}")
    return time.perf_counter() - start


def measure(venv: Path, models: Path, name: str, workers: str | None, body: bytes, port: int, args) -> dict:
    work = Path(tempfile.mkdtemp(prefix="workers-"))
    env = {**os.environ, "MLSERVER_HTTP_PORT": str(port), "MLSERVER_GRPC_PORT": str(port + 1),
           "MLSERVER_METRICS_PORT": str(port + 2), "MLSERVER_METRICS_DIR": str(work)}  # fmt: skip
    env.pop("MLSERVER_PARALLEL_WORKERS", None)
    if workers is not None:
        env["MLSERVER_PARALLEL_WORKERS"] = workers
    server = Server([venv / "bin" / "mlserver", "start", models], port, name, env=env, cwd=work)
    base = server.url
    try:
        ready = server.wait_ready(timeout=300)
        time.sleep(2)  # let the workers settle before reading memory
        rss = server.server_rss(own=True)
        post(f"{base}/infer", body)  # first request outside the clock
        latencies: list[float] = []
        lock = threading.Lock()

        def one(_: int) -> None:
            seconds = post(f"{base}/infer", body)
            with lock:
                latencies.append(seconds)

        started = time.perf_counter()
        with ThreadPoolExecutor(args.concurrency) as pool:
            list(pool.map(one, range(args.requests)))
        elapsed = time.perf_counter() - started
        latencies.sort()
        return {
            "ready": ready, "rss": rss, "rps": args.requests / elapsed,
            "p50": latencies[len(latencies) // 2] * 1000, "p95": latencies[int(len(latencies) * 0.95)] * 1000,
        }  # fmt: skip
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path, help="an MLflow model dir (default: train examples/iris)")
    parser.add_argument("--request", type=Path, default=ROOT / "examples" / "iris" / "request.json")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--port", type=int, default=18800)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="workers-bench-"))
    model = args.model or train_iris(work / "iris-model")
    name = "bench"
    subprocess.run([BIN / "mlflow-kserve", "init", "--model-uri", model, "--name", name, "--models-dir",
                    work / "models", "--env-dir", work / "env"], check=True, capture_output=True)  # fmt: skip
    report = json.loads((work / "env" / "report.json").read_text())
    body = args.request.read_bytes()
    results: dict[str, list[dict]] = {label: [] for label in CONFIGS}
    for round_ in range(args.rounds):
        for i, (label, workers) in enumerate(CONFIGS.items()):
            port = args.port + 10 * (round_ * len(CONFIGS) + i)
            results[label].append(measure(work / "env" / "venv", work / "models", name, workers, body, port, args))
    day = time.strftime("%Y-%m-%d")
    print(f"Model: {model.name} ({len(report['packages'])} packages, {report['serving_stack'][0]}), "
          f"Python {sys.version.split()[0]}, {os.cpu_count()} cores, {args.rounds} rounds alternating, "
          f"{args.requests} requests x {args.concurrency} threads per start, medians, one run on {day}\n")  # fmt: skip
    print("| MLSERVER_PARALLEL_WORKERS | ready (s) | server RSS after ready (MB) | requests/s | p50 (ms) | p95 (ms) |")
    print("|---|---|---|---|---|---|")
    for label, runs in results.items():
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(f"| {label} | {med['ready']:.1f} | {med['rss'] / 1e6:.0f} | {med['rps']:.0f} | {med['p50']:.1f} | "
              f"{med['p95']:.1f} |")  # fmt: skip
    print("\nraw:", json.dumps(results))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
