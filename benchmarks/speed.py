"""Serving speed of both backends on the same model, in one run (not a test): closed-loop V2 load at a given
concurrency (each client sends its next request as soon as its answer arrives, on one keep-alive connection),
large bodies, and the bare predict floor. Backends alternate in rounds within each measurement, so drift on a
shared machine hits each alike; only the ratios within one run mean anything.

    .venv/bin/python benchmarks/speed.py [--model DIR] [--seconds 20] [--concurrency 16 64] [--large-mb 5.8 20]
        [--backends mlflow mlserver mlflow@mlserver] [--markdown]

The model defaults to a wine classifier (13 float64 columns, a column signature: the holdout-style tabular model
of KServe's MLflow example). Each backend's environment is built by `mlflow-kserve init --backend <b>` (a cache
dir of this run); both servers run at once, each idle while the other is measured, and each starts as the server
image starts it: `mlserver start` with the chart's MLSERVER_PARALLEL_WORKERS=0, or `python -m mlflow_kserve_server
start` with one worker. ``mlflow@mlserver`` is the mlflow backend started from MLServer's venv (the same packages
as MLServer: uvloop, httptools, orjson), so the two servers compare on the same venv too. The load generator is a
single asyncio thread with raw keep-alive HTTP/1.1 connections (little CPU of its own), in this process.
``--markdown`` prints the table of docs/performance.md (date, machine, ratios to MLServer) after the JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from support import BIN, ROOT, Server

NAME = "wine"
PORTS = {"mlflow": 18480, "mlserver": 18490, "mlflow@mlserver": 18500}
SAME_VENV = "mlflow@mlserver"  # the mlflow backend from MLServer's venv


def train_wine(dest: Path) -> Path:
    code = f"""
import mlflow, numpy as np, pandas as pd
from sklearn.datasets import load_wine
from sklearn.linear_model import LogisticRegression
data = load_wine()
frame = pd.DataFrame(data.data.astype(np.float64), columns=[c.replace("/", "_") for c in data.feature_names])
model = LogisticRegression(max_iter=5000).fit(frame, data.target)
signature = mlflow.models.infer_signature(frame.iloc[:2], model.predict(frame.iloc[:2]))
mlflow.sklearn.save_model(model, {str(dest)!r}, signature=signature)
"""
    if not (dest / "MLmodel").exists():
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return dest


def columns(model: Path) -> list[str]:
    import yaml

    signature = yaml.safe_load((model / "MLmodel").read_text())["signature"]
    return [c["name"] for c in json.loads(signature["inputs"])]


def request_body(names: list[str], rows: int) -> bytes:
    inputs = [{"name": n, "shape": [rows], "datatype": "FP64", "data": [round(1.0 + (i % 97) * 0.173, 3)
              for i in range(rows)]} for n in names]  # fmt: skip
    return json.dumps({"inputs": inputs}).encode()


def binary_body(names: list[str], rows: int) -> tuple[bytes, int]:
    import numpy as np

    inputs = [{"name": n, "shape": [rows], "datatype": "FP64", "parameters": {"binary_data_size": rows * 8}}
              for n in names]  # fmt: skip
    head = json.dumps({"inputs": inputs, "parameters": {"binary_data_output": True}}).encode()
    tail = b"".join(np.full(rows, 1.5).tobytes() for _ in names)
    return head + tail, len(head)


def http_request(body: bytes, headers: dict[str, str] | None = None) -> bytes:
    lines = [f"POST /v2/models/{NAME}/infer HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json",
             f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in (headers or {}).items())]  # fmt: skip
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes) -> float:
    started = time.perf_counter()
    writer.write(raw)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = next(
        int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
    )
    await reader.readexactly(length)
    if status != 200:
        raise RuntimeError(f"HTTP {status}")
    return time.perf_counter() - started


async def closed_loop(port: int, raw: bytes, concurrency: int, seconds: float) -> list[float]:
    """Latencies of every request ``concurrency`` clients completed in ``seconds``."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 26)
        while time.perf_counter() < deadline:
            latencies.append(await _one(reader, writer, raw))
        writer.close()

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return latencies


def summary(latencies: list[float], seconds: float) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "req/s": round(len(ordered) / seconds, 1),
        "p50 ms": round(1000 * ordered[len(ordered) // 2], 1),
        "p99 ms": round(1000 * ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)], 1),
    }


def sequential(port: int, raw: bytes, count: int) -> dict[str, float]:
    async def run() -> list[float]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 28)
        times = [await _one(reader, writer, raw) for _ in range(count)]
        writer.close()
        return times

    times = asyncio.run(run())
    return {"median s": round(statistics.median(times), 3), "max s": round(max(times), 3)}


def _accepts(port: int, raw: bytes, results: dict[str, Any], label: str) -> bool:
    """One request first: a backend that refuses this kind of request (MLServer: binary tensors, 422) is noted."""
    try:
        sequential(port, raw, 1)
        return True
    except RuntimeError as exc:
        results[label] = f"refused: {exc}"
        return False


def init(model: Path, backend: str, work: Path, extra: list[str]) -> Path:
    env_dir = work / f"env-{backend}"
    cmd = [BIN / "mlflow-kserve", "init", "--model-uri", str(model), "--name", NAME, "--backend", backend,
           "--models-dir", str(work / f"models-{backend}"), "--env-dir", str(env_dir),
           "--cache-dir", str(work / "cache"), *extra]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True)
    return env_dir


def start(backend: str, env_dir: Path, models: Path, port: int) -> Server:
    """``backend`` from ``env_dir``; SAME_VENV is the mlflow backend on MLServer's venv (``env_dir``), with the V2
    server package from this source tree (init copies it only for the mlflow backend)."""
    venv = env_dir / "venv"
    lib = ROOT / "initcontainer" if backend == SAME_VENV else env_dir / "lib"
    if backend == "mlserver":
        env = {"MLSERVER_HTTP_PORT": str(port), "MLSERVER_GRPC_PORT": str(port + 1),
               "MLSERVER_METRICS_PORT": str(port + 2), "MLSERVER_PARALLEL_WORKERS": "0",
               "MLSERVER_METRICS_DIR": str(env_dir.parent)}  # fmt: skip
        cmd = [venv / "bin" / "mlserver", "start", models]
    else:
        env = {"PYTHONPATH": str(lib)}
        cmd = [venv / "bin" / "python", "-m", "mlflow_kserve_server", "start", models, "--host", "127.0.0.1",
               "--port", str(port), "--metrics-port", str(port + 2)]  # fmt: skip
    server = Server(cmd, port, NAME, env=env, cwd=env_dir)
    server.wait_ready()
    return server


def floor(env_dir: Path, model: Path, names: list[str], seconds: float) -> float:
    """Bare ``pyfunc.predict`` of one row, one thread, in the backend's venv: calls per second."""
    code = f"""
import time, mlflow.pyfunc, pandas as pd
m = mlflow.pyfunc.load_model({str(model)!r})
row = pd.DataFrame({{n: [1.5] for n in {names!r}}})
for _ in range(50): m.predict(row)
n, t = 0, time.perf_counter()
while time.perf_counter() - t < {seconds}:
    m.predict(row); n += 1
print(n / (time.perf_counter() - t))
"""
    out = subprocess.run([env_dir / "venv" / "bin" / "python", "-c", code], check=True, capture_output=True, text=True)
    return round(float(out.stdout.strip().splitlines()[-1]), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="an MLflow model with a column signature (default: wine)")
    parser.add_argument("--seconds", type=float, default=20.0, help="of load per backend and concurrency")
    parser.add_argument("--rounds", type=int, default=4, help="the seconds split into alternating rounds")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--large-mb", type=float, nargs="+", default=[5.8, 20.0])
    parser.add_argument("--backends", nargs="+", default=["mlflow", "mlserver", SAME_VENV])
    parser.add_argument("--init-arg", action="append", default=[], help="extra `init` flag (repeatable)")
    parser.add_argument("--markdown", action="store_true", help="print the docs' table too (docs/performance.md)")
    parser.add_argument("--work", type=Path, help="work dir to keep (its cache makes a rerun's init quick)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="speed-"))
    work.mkdir(parents=True, exist_ok=True)
    model = args.model or train_wine(work / "wine-model")
    names = columns(model)
    built = {b: init(model, b, work, args.init_arg) for b in {_venv_of(b) for b in args.backends}}
    envs = {b: built[_venv_of(b)] for b in args.backends}
    one_row = http_request(request_body(names, 1))
    binary, head = binary_body(names, 1)
    binary_row = http_request(binary, {"Inference-Header-Content-Length": str(head)})
    results: dict[str, dict[str, Any]] = {b: {} for b in args.backends}
    for backend in args.backends:
        same = next((b for b in args.backends if b in results and envs[b] == envs[backend] and results[b]), None)
        results[backend]["floor predict/s"] = (results[same]["floor predict/s"] if same
                                               else floor(envs[backend], model, names, 5))  # fmt: skip
    per_row = len(request_body(names, 1000)) / 1000
    servers = {b: start(b, envs[b], envs[b].parent / f"models-{_venv_of(b)}", PORTS[b]) for b in args.backends}
    try:
        for backend in args.backends:
            asyncio.run(closed_loop(PORTS[backend], one_row, 4, 2.0))  # warm-up
        loads = [(f"json c={c}", one_row, c) for c in args.concurrency]
        loads.append((f"binary c={args.concurrency[0]}", binary_row, args.concurrency[0]))
        for label, raw, concurrency in loads:
            taking = [b for b in args.backends if _accepts(PORTS[b], raw, results[b], label)]
            pooled: dict[str, list[float]] = {b: [] for b in taking}
            for _ in range(args.rounds):  # alternating: the machine's drift hits each backend alike
                for backend in taking:
                    seconds = args.seconds / args.rounds
                    pooled[backend] += asyncio.run(closed_loop(PORTS[backend], raw, concurrency, seconds))
            for backend in taking:
                results[backend][label] = summary(pooled[backend], args.seconds)
        for megabytes in args.large_mb:
            raw = http_request(request_body(names, int(megabytes * 1e6 / per_row)))
            times: dict[str, list[float]] = {b: [] for b in args.backends}
            for _ in range(5):
                for backend in args.backends:
                    times[backend].append(sequential(PORTS[backend], raw, 1)["median s"])
            for backend in args.backends:
                results[backend][f"{megabytes} MB"] = {"median s": statistics.median(times[backend]),
                                                       "max s": max(times[backend])}  # fmt: skip
        for backend in args.backends:
            results[backend]["RSS MB"] = round(servers[backend].server_rss(own=True) / 1e6)
    finally:
        for server in servers.values():
            server.stop()
    print(json.dumps({"model": str(model), "cpus": os.cpu_count(), "results": results}, indent=1))
    if args.markdown:
        print(markdown(results, args))


def _venv_of(backend: str) -> str:
    """The backend whose `init` builds the venv ``backend`` runs from."""
    return "mlserver" if backend == SAME_VENV else backend


LABELS = {"mlflow": "mlflow backend (its own venv, as `auto` serves it)", "mlserver": "MLServer 1.7.1",
          SAME_VENV: "mlflow backend on MLServer's venv"}  # fmt: skip


def markdown(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> str:
    """The table of docs/performance.md: one row per backend, then each one's ratio to MLServer (req/s: higher is
    better; the rest: lower is better)."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown CPU")  # fmt: skip
    c0 = args.concurrency[0]
    columns = [*(f"json c={c}" for c in args.concurrency), f"binary c={c0}"]
    head = ["backend", *(f"{c} req/s, p50/p99 ms" for c in columns), *(f"{mb} MB s" for mb in args.large_mb),
            "RSS MB", "floor predict/s"]  # fmt: skip
    machine = f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores ({cpu}), Python {sys.version.split()[0]}"
    lines = [f"{machine}, {args.seconds:.0f} s per load", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for backend, r in results.items():
        cells = [f"{r[c]['req/s']:.0f}, {r[c]['p50 ms']:.1f}/{r[c]['p99 ms']:.1f}" if "req/s" in r.get(c, {})
                 else "n/a" for c in columns]  # fmt: skip
        cells += [f"{r[f'{mb} MB']['median s']:.2f}" for mb in args.large_mb]
        lines.append(
            f"| {LABELS.get(backend, backend)} | "
            + " | ".join([*cells, str(r["RSS MB"]), str(r["floor predict/s"])])
            + " |"
        )
    base = results.get("mlserver")
    if base:
        lines += [
            "",
            "Ratio to MLServer (req/s: higher is better; latency, seconds, RSS: lower is better):",
            "",
            "| " + " | ".join(head[:-1]) + " |",
            "|" + "---|" * (len(head) - 1),
        ]
        for backend, r in results.items():
            if backend == "mlserver":
                continue
            cells = []
            for c in columns:
                if "req/s" in r.get(c, {}) and "req/s" in base.get(c, {}):
                    cells.append(f"{r[c]['req/s'] / base[c]['req/s']:.2f}x, {r[c]['p50 ms'] / base[c]['p50 ms']:.2f}x/"
                                 f"{r[c]['p99 ms'] / base[c]['p99 ms']:.2f}x")  # fmt: skip
                else:
                    cells.append("n/a")
            cells += [f"{r[f'{mb} MB']['median s'] / base[f'{mb} MB']['median s']:.2f}x" for mb in args.large_mb]
            cells.append(f"{r['RSS MB'] / base['RSS MB']:.2f}x")
            lines.append(f"| {LABELS.get(backend, backend)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "benchmarks"))
    main()
