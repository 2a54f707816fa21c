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
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CONFIGS = {"default (1 worker)": None, "0 (inference in the server process)": "0"}


def tree_rss(pid: int) -> int:
    """Bytes resident in ``pid`` and all its descendants (from /proc: no psutil needed)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        todo.extend(children.get(current, []))
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


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
    base = f"http://127.0.0.1:{port}/v2/models/{name}"
    start = time.monotonic()
    proc = subprocess.Popen([str(venv / "bin" / "mlserver"), "start", str(models)], env=env, cwd=work,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{base}/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() - start > 300:
                raise RuntimeError("mlserver did not become ready")
            time.sleep(0.05)
        ready = time.monotonic() - start
        time.sleep(2)  # let the workers settle before reading memory
        rss = tree_rss(proc.pid)
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
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
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
    model = args.model
    if model is None:
        model = work / "iris-model"
        subprocess.run([sys.executable, ROOT / "examples" / "iris" / "train.py", model], check=True,
                       capture_output=True)  # fmt: skip
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
