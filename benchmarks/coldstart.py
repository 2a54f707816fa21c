"""Cold-start benchmark (not a test): time to a ready-to-serve environment, ours against the alternatives,
on the same model in one run. Prints a markdown table; ratios are of this run only (machines are noisy).

    .venv/bin/python benchmarks/coldstart.py [--model DIR] [--skip-pip]

(a) hand-made: fresh venv + `pip install --no-cache-dir -r requirements.txt mlserver mlserver-mlflow`
(b) `mlflow models prepare-env --env-manager uv` (MLflow's own; it does not add the serving stack)
(c) `mlflow-kserve init`, empty cache          (d) `mlflow-kserve init`, warm cache (both --serve-from-cache,
    as the chart runs them)                    (c0) `mlflow-kserve init` without a cache volume
(e) `mlflow-kserve run` until /v2/models/<name>/ready, cold and warm
ref: raw `uv pip install` of the same lock into a fresh venv, uv cache empty (the floor for a cold install)
ref-ready: that venv served by `mlserver start` until ready: a hand-rolled uv image, to compare with (e-cold)

Backends (a second table; ``--backends-only`` runs just this): for each of ``--backend mlserver`` and
``--backend mlflow`` on the same model, `mlflow-kserve run` cold (empty work dir) and warm (same work dir): init
seconds (report.json), seconds to /v2/models/<name>/ready, the server's RSS once ready (its process tree), and
p50/p99 latency of 1,000 identical V2 requests (examples/iris/request.json, one keep-alive connection).
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
import time
import urllib.request
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
UV = shutil.which("uv", path=str(BIN)) or "uv"


def timed(cmd: list[str | Path], env: dict[str, str] | None = None, cwd: Path | None = None) -> float:
    start = time.monotonic()
    proc = subprocess.run([str(c) for c in cmd], env={**os.environ, **(env or {})}, cwd=cwd, capture_output=True,
                          text=True)  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed: {proc.stdout[-1500:]}{proc.stderr[-1500:]}")
    return time.monotonic() - start


def until_ready(cmd: list[str | Path], port: int, name: str, env: dict[str, str] | None = None,
                cwd: Path | None = None) -> float:  # fmt: skip
    """Seconds from starting ``cmd`` until MLServer answers /v2/models/<name>/ready; stops it after."""
    start = time.monotonic()
    proc = subprocess.Popen([str(c) for c in cmd], env={**os.environ, **(env or {})}, cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/models/{name}/ready", timeout=2) as r:
                    if r.status == 200:
                        return time.monotonic() - start
            except OSError:
                pass
            if proc.poll() is not None:
                raise RuntimeError(f"{cmd[0]} exited")
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)


def run_to_ready(model: Path, work: Path, port: int) -> float:
    return until_ready(
        [BIN / "mlflow-kserve", "run", "--model-uri", model, "--name", "bench", "--work-dir", work,
         "--port", str(port), "--grpc-port", str(port + 1), "--metrics-port", str(port + 2)],
        port, "bench",
    )  # fmt: skip


def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and every descendant (MLServer runs its model in worker processes)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        todo += children.get(current, [])
        try:
            status = Path(f"/proc/{current}/status").read_text()
        except OSError:
            continue
        total += next((int(ln.split()[1]) * 1024 for ln in status.splitlines() if ln.startswith("VmRSS:")), 0)
    return total


def serve_measured(model: Path, work: Path, port: int, backend: str, n: int) -> dict[str, float]:
    """`mlflow-kserve run --backend B` until ready; then the server's RSS and the latency of ``n`` requests."""
    cmd = [
        BIN / "mlflow-kserve",
        "run",
        "--model-uri",
        model,
        "--name",
        "bench",
        "--work-dir",
        work,
        "--backend",
        backend,
        "--port",
        str(port),
        "--grpc-port",
        str(port + 1),
        "--metrics-port",
        str(port + 2),
    ]
    start = time.monotonic()
    proc = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    url = f"http://127.0.0.1:{port}/v2/models/bench"
    try:
        while True:
            try:
                if requests.get(f"{url}/ready", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if proc.poll() is not None:
                raise RuntimeError(f"run --backend {backend} exited {proc.returncode}")
            time.sleep(0.1)
        ready = time.monotonic() - start
        rss = sum(tree_rss(int(c)) for c in _children(proc.pid))  # the server's tree, not the `run` watching it
        body = json.loads((ROOT / "examples" / "iris" / "request.json").read_text())
        latencies = []
        with requests.Session() as session:
            for _ in range(n):
                sent = time.perf_counter()
                response = session.post(f"{url}/infer", json=body, timeout=30)
                latencies.append(time.perf_counter() - sent)
                response.raise_for_status()
        latencies.sort()
        facts = json.loads(next(work.glob("models/*/env/report.json")).read_text())
        return {"ready": ready, "rss_mb": rss / 1e6, "p50_ms": statistics.median(latencies) * 1000,
                "p99_ms": latencies[int(0.99 * (n - 1))] * 1000, "init": facts["seconds"]["total"],
                "venv_mb": facts["bytes"]["venv"] / 1e6, "packages": len(facts["packages"])}  # fmt: skip
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)


def _children(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []


def backends_table(model: Path, work: Path, n: int = 1000) -> None:
    """Both backends on the same model, one run: cold and warm `run`, RSS and latency once warm."""
    rows = []
    for index, backend in enumerate(("mlserver", "mlflow")):
        home = work / f"backend-{backend}"
        cold = serve_measured(model, home, 18740 + 10 * index, backend, 10)
        warm = serve_measured(model, home, 18760 + 10 * index, backend, n)
        rows.append((backend, cold, warm))
    print(f"\nBackends on the same model, one run; latency of {n} identical V2 requests after the warm start\n")
    print("| backend | packages | venv MB | init cold s | init warm s | ready cold s | ready warm s | server RSS MB "
          "| p50 ms | p99 ms |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for backend, cold, warm in rows:
        print(f"| {backend} | {cold['packages']} | {cold['venv_mb']:.0f} | {cold['init']:.1f} | {warm['init']:.1f} "
              f"| {cold['ready']:.1f} | {warm['ready']:.1f} | {warm['rss_mb']:.0f} | {warm['p50_ms']:.1f} "
              f"| {warm['p99_ms']:.1f} |")  # fmt: skip


def mlserver_env(port: int, work: Path) -> dict[str, str]:
    return {"MLSERVER_HTTP_PORT": str(port), "MLSERVER_GRPC_PORT": str(port + 1),
            "MLSERVER_METRICS_PORT": str(port + 2), "MLSERVER_METRICS_DIR": str(work)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path, help="an MLflow model dir (default: train examples/iris)")
    parser.add_argument("--skip-pip", action="store_true", help="skip (a), the slow hand-made pip install")
    parser.add_argument("--backends-only", action="store_true", help="only the table of the two backends")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="coldstart-"))
    model = args.model
    if model is None:
        model = work / "iris-model"
        subprocess.run([sys.executable, ROOT / "examples" / "iris" / "train.py", model], check=True,
                       capture_output=True)  # fmt: skip
    if args.backends_only:
        backends_table(model, work)
        shutil.rmtree(work, ignore_errors=True)
        return
    python = getattr(sys, "_base_executable", sys.executable)
    nocache = {"UV_CACHE_DIR": str(work / "uv-empty")}
    times: dict[str, float | None] = {}
    notes: dict[str, str] = {}

    # (c) ours, empty cache; the lock it writes is the reference's input
    cache = work / "cache"
    ours = ["init", "--model-uri", model, "--name", "bench", "--cache-dir", cache, "--serve-from-cache"]
    times["c"] = timed([BIN / "mlflow-kserve", *ours, "--models-dir", work / "c/models", "--env-dir", work / "c/env"])
    report = json.loads((work / "c/env/report.json").read_text())
    notes["c"] = ", ".join(f"{k} {v:.1f}s" for k, v in report["seconds"].items() if k != "total")
    # (d) ours, warm cache
    times["d"] = timed([BIN / "mlflow-kserve", *ours, "--models-dir", work / "d/models", "--env-dir", work / "d/env"])
    report = json.loads((work / "d/env/report.json").read_text())
    notes["d"] = ", ".join(f"{k} {v:.1f}s" for k, v in report["seconds"].items() if k != "total")
    packages = len(report["packages"])
    venv_mb = report["bytes"]["venv"] / 1e6
    # (c-uv) a new environment on a cache that already holds uv's downloads (a fleet's next model)
    for sub in ("envs", "locks"):
        shutil.rmtree(cache / sub)
    times["c-uv"] = timed([BIN / "mlflow-kserve", *ours, "--models-dir", work / "cu/models", "--env-dir",
                           work / "cu/env"])  # fmt: skip
    report = json.loads((work / "cu/env/report.json").read_text())
    notes["c-uv"] = ", ".join(f"{k} {v:.1f}s" for k, v in report["seconds"].items() if k != "total")
    # (c0) no cache volume: uv's cache is a scratch folder beside the venv
    times["c0"] = timed([BIN / "mlflow-kserve", "init", "--model-uri", model, "--name", "bench", "--models-dir",
                         work / "c0/models", "--env-dir", work / "c0/env"])  # fmt: skip
    report = json.loads((work / "c0/env/report.json").read_text())
    notes["c0"] = ", ".join(f"{k} {v:.1f}s" for k, v in report["seconds"].items() if k != "total")
    # --slim: mlflow-skinny instead of mlflow, same model, its own cache
    slim = ["init", "--model-uri", model, "--name", "bench", "--slim", "--cache-dir", work / "cache-slim"]
    times["slim"] = timed(
        [BIN / "mlflow-kserve", *slim, "--models-dir", work / "s/models", "--env-dir", work / "s/env"]
    )
    slim_report = json.loads((work / "s/env/report.json").read_text())
    notes["slim"] = f"venv {slim_report['bytes']['venv'] / 1e6:.0f} MB vs {venv_mb:.0f} MB without --slim"
    # ref: raw uv install of our lock, empty uv cache
    timed([UV, "venv", "-q", "--python", python, work / "ref"])
    times["ref"] = timed([UV, "pip", "install", "-q", "--python", work / "ref/bin/python", "--require-hashes",
                          "--no-deps", "-r", work / "c/env/requirements.lock"], env=nocache)  # fmt: skip
    # ref-ready: that venv served as it is (no verify, no bytecode): what a hand-rolled uv image pays to ready
    (work / "ref-run").mkdir()
    first_start = until_ready([work / "ref/bin/mlserver", "start", work / "c/models"], 18720, "bench",
                              env=mlserver_env(18720, work / "ref-run"), cwd=work / "ref-run")  # fmt: skip
    times["ref-ready"] = times["ref"] + first_start
    notes["ref-ready"] = f"install {times['ref']:.1f}s + MLServer's first start {first_start:.1f}s"
    # (a) hand-made pip
    if not args.skip_pip:
        timed([python, "-m", "venv", work / "a"])
        reqs = model / "requirements.txt"
        times["a"] = timed([work / "a/bin/pip", "install", "-q", "--no-cache-dir", "-r", reqs, "mlserver",
                            "mlserver-mlflow", "uvloop<0.22"], env={"PIP_CONFIG_FILE": os.devnull})  # fmt: skip
    else:
        times["a"] = None
    # (b) MLflow's prepare-env with uv
    try:
        times["b"] = timed([BIN / "mlflow", "models", "prepare-env", "-m", model, "--env-manager", "uv"],
                           env={**nocache, "MLFLOW_ENV_ROOT": str(work / "mlflow-envs")})  # fmt: skip
        notes["b"] = "model's requirements only: no MLServer"
    except RuntimeError as exc:
        times["b"], notes["b"] = None, f"failed: {str(exc).splitlines()[-1][:80]}"
    # (e) run to ready, cold (fresh work dir: empty cache) and warm (same work dir)
    times["e-cold"] = run_to_ready(model, work / "run", 18700)
    times["e-warm"] = run_to_ready(model, work / "run", 18710)

    rows = [
        ("a", "hand-made: venv + pip install -r requirements.txt mlserver mlserver-mlflow"),
        ("b", "mlflow models prepare-env --env-manager uv"),
        ("ref", "raw uv pip install of the same lock (empty uv cache)"),
        ("ref-ready", "raw uv pip install, then mlserver start to /v2/models/<name>/ready"),
        ("c", "mlflow-kserve init, empty cache"),
        ("c-uv", "mlflow-kserve init, new environment, uv downloads already on the cache"),
        ("c0", "mlflow-kserve init, no cache volume"),
        ("d", "mlflow-kserve init, warm cache"),
        ("slim", "mlflow-kserve init --slim, empty cache"),
        ("e-cold", "mlflow-kserve run to /v2/models/<name>/ready, cold"),
        ("e-warm", "mlflow-kserve run to /v2/models/<name>/ready, warm"),
    ]
    version, day = sys.version.split()[0], time.strftime("%Y-%m-%d")
    print(f"Model: {model.name} ({packages} packages), Python {version}, one run on {day}\n")
    print("| | what | seconds | vs (a) | vs raw uv | notes |")
    print("|---|---|---|---|---|---|")
    for key, what in rows:
        value = times.get(key)
        if value is None:
            print(f"| {key} | {what} | n/a | | | {notes.get(key, 'skipped')} |")
            continue
        vs_a = f"{times['a'] / value:.1f}x faster" if times.get("a") and key != "a" else ""
        vs_uv = f"{value / times['ref']:.2f}x" if times.get("ref") else ""
        print(f"| {key} | {what} | {value:.1f} | {vs_a} | {vs_uv} | {notes.get(key, '')} |")
    backends_table(model, work)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
