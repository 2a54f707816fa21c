"""Serving throughput benchmark (not a test): both backends on the same model, in one run, one server at a time.
Prints markdown tables; only the ratios within one run mean anything (the machine is shared and noisy).

    .venv/bin/python benchmarks/throughput.py [--seconds 20] [--json OUT] [--work DIR]

The model: a scikit-learn pipeline trained on the wine dataset (scikit-learn ships it) with a train/holdout split,
named FP64 columns in, the class out (the issue's holdout-style wine model).
`mlflow-kserve init --backend mlserver` builds one venv (it holds MLflow too), and from it:

  mlserver        `mlserver start` with the chart's settings (MLSERVER_PARALLEL_WORKERS=0)
  mlflow          `python -m mlflow_kserve_server start` (the mlflow backend), from the same venv
  mlflow (own)    the mlflow backend from the venv `--backend mlflow` builds (the model's packages only), as `auto`
                  serves a model of MLflow >= 2.21

For each: a closed-loop client (asyncio, one keep-alive connection per concurrent request, on the same machine)
sends one-row V2 requests for --seconds at 16 and at 64 concurrent (req/s, p50, p99), then the same at 16 with
the binary tensor data extension; the server's RSS (its process tree) after the load; and a 20 MB JSON request
(and the same rows in binary), median of 3. The floor: ``pyfunc.predict`` of one row in a bare python of the venv,
on one thread, and of the 20 MB request's rows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from support import BIN, ROOT, Server, tree_rss

NAME = "wine"
TARGET_BYTES = 20 * 1024 * 1024
SERVER_PATH = ROOT / "initcontainer"


# -- the model ---------------------------------------------------------------------------------------------------
def train_wine(dest: Path) -> Path:
    """Holdout-style: scaler + logistic regression fitted on 80% of the wine data, scored on the rest."""
    import mlflow
    import pandas as pd
    from sklearn.datasets import load_wine
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = load_wine(as_frame=True)
    frame = data.frame.drop(columns="target").astype(np.float64)
    train, holdout, y_train, y_holdout = train_test_split(frame, data.target, test_size=0.2, random_state=7)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(train, y_train)
    print(f"wine model: holdout accuracy {model.score(holdout, y_holdout):.3f}", file=sys.stderr)
    signature = mlflow.models.infer_signature(holdout.iloc[:2], model.predict(holdout.iloc[:2]))
    mlflow.sklearn.save_model(model, dest, signature=signature,
                              serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE)  # fmt: skip
    return dest


def rows(count: int) -> dict[str, np.ndarray]:
    """``count`` rows of the model's input columns: the wine data repeated, jittered so every value has all its
    digits (as real measurements written as JSON do)."""
    from sklearn.datasets import load_wine

    frame = load_wine(as_frame=True).frame.drop(columns="target").astype(np.float64)
    generator = np.random.default_rng(7)
    picked = frame.iloc[np.arange(count) % len(frame)].to_numpy()
    picked = picked * (1 + generator.normal(0, 1e-3, picked.shape))
    return {column: picked[:, i] for i, column in enumerate(frame.columns)}


def v2_body(columns: dict[str, np.ndarray], binary: bool) -> tuple[bytes, dict[str, str]]:
    inputs, raw = [], []
    for name, values in columns.items():
        tensor: dict[str, Any] = {"name": name, "datatype": "FP64", "shape": [len(values)]}
        if binary:
            raw.append(values.astype("<f8").tobytes())
            tensor["parameters"] = {"binary_data_size": len(raw[-1])}
        else:
            tensor["data"] = values.tolist()
        inputs.append(tensor)
    header = json.dumps({"inputs": inputs}).encode()
    if not binary:
        return header, {"content-type": "application/json"}
    return header + b"".join(raw), {"content-type": "application/octet-stream",
                                    "inference-header-content-length": str(len(header))}  # fmt: skip


# -- the client --------------------------------------------------------------------------------------------------
def raw_request(port: int, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"POST /v2/models/{NAME}/infer HTTP/1.1", f"host: 127.0.0.1:{port}", f"content-length: {len(body)}",
             *(f"{k}: {v}" for k, v in headers.items())]  # fmt: skip
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> None:
    writer.write(request)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = head[9:12]
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), None)  # fmt: skip
    if length is None:
        raise RuntimeError(f"no content-length in {head[:200]!r}")
    body = await reader.readexactly(length)
    if status != b"200":
        raise RuntimeError(f"HTTP {status.decode()}: {body[:300]!r}")


async def closed_loop(port: int, request: bytes, concurrency: int, seconds: float) -> list[float]:
    """``concurrency`` connections, each sending ``request`` again as soon as its answer is in, for ``seconds``."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 26)
        try:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                await exchange(reader, writer, request)
                latencies.append(time.perf_counter() - started)
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


def load(port: int, request: bytes, concurrency: int, seconds: float) -> dict[str, float]:
    started = time.perf_counter()
    latencies = sorted(asyncio.run(closed_loop(port, request, concurrency, seconds)))
    elapsed = time.perf_counter() - started
    return {"rps": len(latencies) / elapsed, "p50": _pct(latencies, 0.50) * 1000, "p99": _pct(latencies, 0.99) * 1000}


def once(port: int, request: bytes, times: int = 3) -> float:
    """Median seconds of ``times`` sequential requests (a new connection each)."""

    async def one() -> float:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 28)
        started = time.perf_counter()
        await exchange(reader, writer, request)
        elapsed = time.perf_counter() - started
        writer.close()
        return elapsed

    return statistics.median(asyncio.run(one()) for _ in range(times))


def _pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(len(values) * q))]


# -- the servers -------------------------------------------------------------------------------------------------
def init(model: Path, work: Path, backend: str) -> Path:
    """``mlflow-kserve init`` into ``work``; the models dir."""
    cmd = [str(BIN / "mlflow-kserve"), "init", "--model-uri", str(model), "--name", NAME, "--backend", backend,
           "--models-dir", str(work / "models"), "--env-dir", str(work / "env"), "--cache-dir",
           str(work.parent / "cache"), "--serve-from-cache"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"init --backend {backend} failed: {proc.stderr[-2000:]}")
    return work / "models"


def start(kind: str, work: Path, port: int) -> Server:
    venv, models = work / "env" / "venv", work / "models"
    if kind == "mlserver":
        env = {"MLSERVER_HOST": "127.0.0.1", "MLSERVER_HTTP_PORT": str(port), "MLSERVER_GRPC_PORT": str(port + 1),
               "MLSERVER_METRICS_PORT": str(port + 2), "MLSERVER_METRICS_DIR": str(work / "metrics"),
               "MLSERVER_PARALLEL_WORKERS": "0"}  # fmt: skip
        (work / "metrics").mkdir(exist_ok=True)
        return Server([venv / "bin" / "mlserver", "start", models], port, NAME, env=env, cwd=work)
    cmd = [venv / "bin" / "python", "-m", "mlflow_kserve_server", "start", models, "--host", "127.0.0.1",
           "--port", str(port), "--metrics-port", str(port + 2)]  # fmt: skip
    return Server(cmd, port, NAME, env={"PYTHONPATH": str(SERVER_PATH)}, cwd=work)


def measure(kind: str, work: Path, port: int, seconds: float, small: dict, big: dict) -> dict[str, Any]:
    server = start(kind, work, port)
    try:
        ready = server.wait_ready()
        result: dict[str, Any] = {"ready": ready}
        for binary in (False, True):  # the answer must be right before anything is timed
            body, headers = small[binary]
            try:
                once(port, raw_request(port, body, headers), times=1)
            except RuntimeError as exc:
                if not binary:
                    raise
                result["binary_error"] = str(exc)[:120]
        load(port, raw_request(port, *small[False]), 16, 2.0)  # warm up
        result["c16"] = load(port, raw_request(port, *small[False]), 16, seconds)
        result["c64"] = load(port, raw_request(port, *small[False]), 64, seconds)
        if "binary_error" not in result:
            result["binary16"] = load(port, raw_request(port, *small[True]), 16, seconds)
        result["rss"] = tree_rss(server.proc.pid)
        result["big_json"] = once(port, raw_request(port, *big[False]))
        if "binary_error" not in result:
            result["big_binary"] = once(port, raw_request(port, *big[True]))
        return result
    finally:
        server.stop()


FLOOR = """
import json, sys, time
import mlflow.pyfunc, numpy as np, pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])
columns = json.loads(sys.argv[2])
one = pd.DataFrame({k: np.array(v[:1], dtype=np.float64) for k, v in columns.items()})
model.predict(one)
times, deadline = [], time.perf_counter() + float(sys.argv[3])
while time.perf_counter() < deadline:
    started = time.perf_counter()
    model.predict(one)
    times.append(time.perf_counter() - started)
big = pd.DataFrame({k: np.tile(np.array(v, dtype=np.float64), int(sys.argv[4]) // len(v) + 1)[: int(sys.argv[4])]
                    for k, v in columns.items()})
started = time.perf_counter()
model.predict(big)
times.sort()
print(json.dumps({"calls": len(times) / sum(times), "p50": times[len(times) // 2] * 1000,
                  "p99": times[int(len(times) * 0.99)] * 1000, "big": time.perf_counter() - started}))
"""


def floor(work: Path, model: Path, columns: dict[str, np.ndarray], seconds: float, big_rows: int) -> dict:
    sample = json.dumps({k: v[:200].tolist() for k, v in columns.items()})
    proc = subprocess.run([str(work / "env" / "venv" / "bin" / "python"), "-c", FLOOR, str(model), sample,
                           str(seconds), str(big_rows)], capture_output=True, text=True, check=True)  # fmt: skip
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- the report ---------------------------------------------------------------------------------------------------
LABELS = {"mlserver": "MLServer 1.7.1", "mlflow": "mlflow backend, same venv", "mlflow-own": "mlflow backend, own venv"}


def table(results: dict[str, dict], fl: dict, sizes: dict[str, int], seconds: float) -> str:
    def lat(r: dict | None) -> str:
        return f"{r['p50']:.1f} / {r['p99']:.1f}" if r else "n/a"

    def rps(r: dict | None) -> str:
        return f"{r['rps']:.0f}" if r else "n/a"

    out = [f"Closed loop, one-row requests, {seconds:.0f} s each; 20 MB: {sizes['json'] / 1e6:.1f} MB JSON, "
           f"the same {sizes['rows']:,} rows {sizes['binary'] / 1e6:.1f} MB binary.", "",
           "| backend | req/s @16 | p50 / p99 ms @16 | req/s @64 | p50 / p99 ms @64 | binary req/s @16 | binary "
           "p50 / p99 ms @16 | RSS MB | 20 MB JSON s | 20 MB binary s |",
           "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for kind, r in results.items():
        big_binary = f"{r['big_binary']:.2f}" if "big_binary" in r else "n/a"
        out.append(f"| {LABELS[kind]} | {rps(r['c16'])} | {lat(r['c16'])} | {rps(r['c64'])} | {lat(r['c64'])} | "
                   f"{rps(r.get('binary16'))} | {lat(r.get('binary16'))} | {r['rss'] / 1e6:.0f} | "
                   f"{r['big_json']:.2f} | {big_binary} |")  # fmt: skip
    out.append(f"| floor: `pyfunc.predict`, one thread | {fl['calls']:.0f} calls/s | {fl['p50']:.2f} / "
               f"{fl['p99']:.2f} |  |  |  |  |  | {fl['big']:.2f} (predict only) |  |")  # fmt: skip
    if "mlserver" in results:
        base = results["mlserver"]
        out += ["", "Ratios to MLServer (req/s: higher is better; latency, RSS, seconds: lower is better):", "",
                "| backend | req/s @16 | p50 @16 | p99 @16 | req/s @64 | p50 @64 | p99 @64 | RSS | 20 MB JSON |",
                "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for kind, r in results.items():
            if kind == "mlserver":
                continue
            cells = [r["c16"]["rps"] / base["c16"]["rps"], r["c16"]["p50"] / base["c16"]["p50"],
                     r["c16"]["p99"] / base["c16"]["p99"], r["c64"]["rps"] / base["c64"]["rps"],
                     r["c64"]["p50"] / base["c64"]["p50"], r["c64"]["p99"] / base["c64"]["p99"],
                     r["rss"] / base["rss"], r["big_json"] / base["big_json"]]  # fmt: skip
            out.append(f"| {LABELS[kind]} | " + " | ".join(f"{c:.2f}x" for c in cells) + " |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="each closed-loop run")
    parser.add_argument("--json", type=Path, help="write the raw numbers here too")
    parser.add_argument("--work", type=Path, help="keep the venvs here (default: a temp dir, removed)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="throughput-"))
    model = train_wine(work / "wine-model")
    one = rows(1)
    per_row = len(v2_body(rows(1000), False)[0]) / 1000
    big_rows = int(TARGET_BYTES / per_row)
    big_columns = rows(big_rows)
    small = {b: v2_body(one, b) for b in (False, True)}
    big = {b: v2_body(big_columns, b) for b in (False, True)}
    sizes = {"json": len(big[False][0]), "binary": len(big[True][0]), "rows": big_rows}
    init(model, work / "mlserver", "mlserver")
    init(model, work / "mlflow-own", "mlflow")
    results = {}
    port = 18900
    for kind, home in (("mlserver", "mlserver"), ("mlflow", "mlserver"), ("mlflow-own", "mlflow-own")):
        server_kind = "mlserver" if kind == "mlserver" else "mlflow"
        results[kind] = measure(server_kind, work / home, port, args.seconds, small, big)
        port += 10
        print(f"{LABELS[kind]}: {json.dumps(results[kind])}", file=sys.stderr, flush=True)
    fl = floor(work / "mlserver", work / "mlserver" / "models" / "model", rows(200), args.seconds, big_rows)
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), "?")  # fmt: skip
    print(f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores ({cpu}), Python {sys.version.split()[0]}\n")
    print(table(results, fl, sizes, args.seconds))
    if args.json:
        args.json.write_text(json.dumps({"results": results, "floor": fl, "sizes": sizes}, indent=2))


if __name__ == "__main__":
    main()
