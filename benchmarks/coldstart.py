"""Cold-start benchmark (not a test): time to ready, ours against the alternatives, on the same model in one run.
Prints markdown tables; ratios are of this run only (machines are noisy).

    .venv/bin/python benchmarks/coldstart.py [--model DIR] [--skip-pip] [--warm-runs 3] [--requests 1000]
                                             [--store-only] [--work-dir DIR]

Time to ready (seconds from nothing running until /v2/models/<name>/ready answers 200):
  pip       hand-made: venv + `pip install -r requirements.txt mlserver mlserver-mlflow`, then `mlserver start`
  uv image  a hand-rolled uv image: raw `uv pip install` of our lock (uv cache empty), then `mlserver start`
            (both with MLServer's own defaults, as a hand-made deployment runs it)
  ours      `mlflow-kserve run`, cold (empty work dir) and warm (the same work dir again: a cache hit), for the
            default backend (auto, which takes --backend mlflow for this model) and for --backend mlserver; warm is
            the median of --warm-runs starts, each split into init (until `run` starts the server) and server (from
            there to ready)
  floor     `load_model` in a bare python of the same venv, median of --warm-runs, alternating with the warm starts:
            what no server can beat for this model
Then the server's RSS once ready (its process tree), and the latency of --requests identical V2 requests
(examples/iris/request.json, one keep-alive connection) on the last warm start of each backend.

A second table times the init step alone: `mlflow-kserve init` cold/warm/without a cache volume/--slim against
raw uv and MLflow's `mlflow models prepare-env`.

A third (alone with --store-only) times the environment store: `mlflow-kserve build` publishes to an S3 server
(moto, on localhost), then "pod B" starts (`run`, a fresh work dir, the package index at a closed port) from the
store, against warm local-cache starts of the same model, alternating, medians of --warm-runs: the archive's
size and parts, the download and unpack seconds (they overlap: parts unpack as they stream in; both are counted
from the restore's start, until the last byte arrived and until the last file was written), and pod B's ready
time over the warm start's (target: at most 1.5x).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests
from support import BIN, ROOT, Server, train_iris

UV = shutil.which("uv", path=str(BIN)) or "uv"
NAME = "bench"
TARGET_WARM = 1.25  # warm ready <= 1.25x the floor
TARGET_PIP = 5.0  # the pip way >= 5x ours cold
PORTS = itertools.count(18700, 10)
FLOOR_CODE = "import sys, mlflow.pyfunc; mlflow.pyfunc.load_model(sys.argv[1]); print('loaded', flush=True)"


def timed(cmd: list[str | Path], env: dict[str, str] | None = None, cwd: Path | None = None) -> float:
    start = time.monotonic()
    proc = subprocess.run([str(c) for c in cmd], env={**os.environ, **(env or {})}, cwd=cwd, capture_output=True,
                          text=True)  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed: {proc.stdout[-1500:]}{proc.stderr[-1500:]}")
    return time.monotonic() - start


def steps(report_path: Path) -> str:
    report = json.loads(report_path.read_text())
    return ", ".join(f"{k} {v:.1f}s" for k, v in report["seconds"].items() if k != "total")


# -- time to ready ------------------------------------------------------------------------------------------
def mlserver_ready(venv: Path, models: Path, work: Path) -> tuple[float, int]:
    """`mlserver start` from ``venv`` with MLServer's defaults: seconds to ready and the server's RSS."""
    port = next(PORTS)
    work.mkdir(parents=True, exist_ok=True)
    env = {"MLSERVER_HTTP_PORT": str(port), "MLSERVER_GRPC_PORT": str(port + 1), "MLSERVER_METRICS_PORT":
           str(port + 2), "MLSERVER_METRICS_DIR": str(work)}  # fmt: skip
    server = Server([venv / "bin" / "mlserver", "start", models], port, NAME, env=env, cwd=work)
    try:
        return server.wait_ready(), server.server_rss(own=True)
    finally:
        server.stop()


def run_ready(model: Path, work: Path, backend: str, requests_after: int = 0, extra: tuple[str, ...] = (),
              env: dict[str, str] | None = None) -> dict:  # fmt: skip
    """`mlflow-kserve run` until ready: seconds (split at "[serve] starting"), RSS, and optionally latency."""
    port = next(PORTS)
    cmd = [BIN / "mlflow-kserve", "run", "--model-uri", model, "--name", NAME, "--work-dir", work, "--backend",
           backend, "--port", str(port), "--grpc-port", str(port + 1), "--metrics-port", str(port + 2),
           *extra]  # fmt: skip
    server = Server(cmd, port, NAME, env=env)
    try:
        ready = server.wait_ready()
        init = server.seen("[serve] starting") or 0.0
        out = {"ready": ready, "init": init, "server": ready - init, "rss": server.server_rss()}
        if requests_after:
            out.update(latency(server.url, requests_after))
    finally:
        server.stop()
    env = next(work.glob("models/*/env"))
    facts = json.loads((env / "report.json").read_text())
    out.update(backend=facts["backend"]["name"], packages=len(facts["packages"]), venv_mb=facts["bytes"]["venv"] / 1e6,
               venv=env / "venv", model_dir=env.parent / "models" / "model", facts=facts)  # fmt: skip
    return out


def latency(url: str, n: int) -> dict[str, float]:
    body = json.loads((ROOT / "examples" / "iris" / "request.json").read_text())
    seconds = []
    with requests.Session() as session:
        for _ in range(n):
            sent = time.perf_counter()
            session.post(f"{url}/infer", json=body, timeout=30).raise_for_status()
            seconds.append(time.perf_counter() - sent)
    seconds.sort()
    return {"p50_ms": statistics.median(seconds) * 1000, "p99_ms": seconds[int(0.99 * (n - 1))] * 1000}


def floor(venv: Path, model_dir: Path) -> float:
    """Seconds from starting the venv's python until load_model returned (not until the process exits)."""
    start = time.monotonic()
    proc = subprocess.Popen([str(venv / "bin" / "python"), "-c", FLOOR_CODE, str(model_dir)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)  # fmt: skip
    assert proc.stdout is not None
    loaded = proc.stdout.readline() == "loaded\n"
    seconds = time.monotonic() - start
    proc.wait()
    if not loaded:
        raise RuntimeError(f"load_model failed in {venv} (exit {proc.returncode})")
    return seconds


def ours(model: Path, work: Path, backend: str, warm_runs: int, n_requests: int) -> dict:
    """Cold once, then warm starts alternating with the floor in the same venv; medians."""
    cold = run_ready(model, work, backend)
    warm, floors = [], []
    for index in range(warm_runs):
        warm.append(run_ready(model, work, backend, n_requests if index == warm_runs - 1 else 0))
        floors.append(floor(cold["venv"], cold["model_dir"]))
    med = {k: statistics.median(w[k] for w in warm) for k in ("ready", "init", "server", "rss")}
    return {"cold": cold, "warm": {**warm[-1], **med}, "floor": statistics.median(floors), "floors": floors,
            "warms": [w["ready"] for w in warm]}  # fmt: skip


def ready_table(times: dict, backends: dict[str, dict], runs: int, n: int) -> None:
    pip = times.get("pip-ready")
    rows = []
    if pip is not None:
        rows.append(("pip: venv + pip install, then `mlserver start`", pip, None, times["pip-rss"],
                     f"install {times['a']:.1f}s + first start {pip - times['a']:.1f}s"))  # fmt: skip
    else:
        rows.append(("pip: venv + pip install, then `mlserver start`", None, None, None, "skipped (--skip-pip)"))
    uv_note = f"install {times['ref']:.1f}s + first start {times['uv-ready'] - times['ref']:.1f}s"
    rows.append(("uv image: raw uv pip install of our lock, then `mlserver start`", times["uv-ready"], None,
                 times["uv-rss"], uv_note))  # fmt: skip
    for label, result in backends.items():
        cold, warm, base = result["cold"], result["warm"], result["floor"]
        rows.append((f"ours cold, {label}", cold["ready"], base, cold["rss"],
                     f"init {cold['init']:.1f}s + server {cold['server']:.1f}s"))  # fmt: skip
        rows.append((f"ours warm, {label}", warm["ready"], base, warm["rss"],
                     f"median of {runs}: init {warm['init']:.1f}s + server {warm['server']:.1f}s"))  # fmt: skip
        rows.append((f"floor: load_model in a bare python of that venv ({cold['packages']} packages)", base, base, None,
                     f"median of {runs}: " + ", ".join(f"{f:.1f}" for f in result["floors"])))  # fmt: skip
    print("| way to ready | seconds | × floor | pip way ÷ this | server RSS MB | notes |")
    print("|---|---|---|---|---|---|")
    for what, value, base, rss, note in rows:
        if value is None:
            print(f"| {what} | n/a | | | | {note} |")
            continue
        is_floor = what.startswith("floor")
        ratio = f"{value / base:.2f}" if base and not is_floor else ""
        faster = f"{pip / value:.1f}x" if pip and not is_floor and not what.startswith("pip") else ""
        print(f"| {what} | {value:.1f} | {ratio} | {faster} | {f'{rss / 1e6:.0f}' if rss else ''} | {note} |")
    print("\nTargets (issue 12), this run:")
    for label, result in backends.items():
        warm_x = result["warm"]["ready"] / result["floor"]
        verdict = "met" if warm_x <= TARGET_WARM else "not met"
        print(f"- warm ≤ {TARGET_WARM}x floor, {label}: {warm_x:.2f}x ({verdict})")
    for label, result in backends.items():
        if pip:
            pip_x = pip / result["cold"]["ready"]
            print(f"- pip way ≥ {TARGET_PIP:.0f}x ours cold, {label}: {pip_x:.1f}x "
                  f"({'met' if pip_x >= TARGET_PIP else 'not met'})")  # fmt: skip
    print(f"\nServing, last warm start: {n} identical V2 requests on one keep-alive connection\n")
    print("| backend | packages | venv MB | server RSS MB | p50 ms | p99 ms |")
    print("|---|---|---|---|---|---|")
    for label, result in backends.items():
        warm = result["warm"]
        print(f"| {label} | {warm['packages']} | {warm['venv_mb']:.0f} | {warm['rss'] / 1e6:.0f} | "
              f"{warm['p50_ms']:.1f} | {warm['p99_ms']:.1f} |")  # fmt: skip


# -- init alone ---------------------------------------------------------------------------------------------
INIT_ROWS = [
    ("a", "hand-made: venv + pip install -r requirements.txt mlserver mlserver-mlflow"),
    ("b", "mlflow models prepare-env --env-manager uv"),
    ("ref", "raw uv pip install of the same lock (empty uv cache)"),
    ("c", "mlflow-kserve init, empty cache"),
    ("c-uv", "mlflow-kserve init, new environment, uv downloads already on the cache"),
    ("c0", "mlflow-kserve init, no cache volume"),
    ("d", "mlflow-kserve init, warm cache"),
    ("slim", "mlflow-kserve init --slim, empty cache"),
]


def init_table(model: Path, work: Path, python: str, skip_pip: bool) -> tuple[dict, dict, int]:
    nocache = {"UV_CACHE_DIR": str(work / "uv-empty")}
    times: dict[str, float | None] = {}
    notes: dict[str, str] = {}
    cache = work / "cache"
    mk = BIN / "mlflow-kserve"
    ours_ = ["init", "--model-uri", model, "--name", NAME, "--cache-dir", cache, "--serve-from-cache"]
    for key, sub in (("c", "c"), ("d", "d")):
        times[key] = timed([mk, *ours_, "--models-dir", work / sub / "models", "--env-dir", work / sub / "env"])
        notes[key] = steps(work / sub / "env" / "report.json")
    packages = len(json.loads((work / "d/env/report.json").read_text())["packages"])
    for sub in ("envs", "locks"):  # a new environment on a cache that already holds uv's downloads
        shutil.rmtree(cache / sub)
    times["c-uv"] = timed([mk, *ours_, "--models-dir", work / "cu/models", "--env-dir", work / "cu/env"])
    notes["c-uv"] = steps(work / "cu/env/report.json")
    times["c0"] = timed([mk, "init", "--model-uri", model, "--name", NAME, "--models-dir", work / "c0/models",
                         "--env-dir", work / "c0/env"])  # fmt: skip
    notes["c0"] = steps(work / "c0/env/report.json")
    slim = ["init", "--model-uri", model, "--name", NAME, "--slim", "--cache-dir", work / "cache-slim"]
    times["slim"] = timed([mk, *slim, "--models-dir", work / "s/models", "--env-dir", work / "s/env"])
    slim_mb = json.loads((work / "s/env/report.json").read_text())["bytes"]["venv"] / 1e6
    full_mb = json.loads((work / "c0/env/report.json").read_text())["bytes"]["venv"] / 1e6
    notes["slim"] = f"venv {slim_mb:.0f} MB vs {full_mb:.0f} MB without --slim"
    # ref: raw uv install of our lock, empty uv cache; then served as it is (a hand-rolled uv image)
    timed([UV, "venv", "-q", "--python", python, work / "ref"])
    times["ref"] = timed([UV, "pip", "install", "-q", "--python", work / "ref/bin/python", "--require-hashes",
                          "--no-deps", "-r", work / "c/env/requirements.lock"], env=nocache)  # fmt: skip
    ready, rss = mlserver_ready(work / "ref", work / "c0/models", work / "ref-run")
    times["uv-ready"], times["uv-rss"] = times["ref"] + ready, rss
    if not skip_pip:
        timed([python, "-m", "venv", work / "a"])
        pip = [work / "a/bin/pip", "install", "-q", "--no-cache-dir", "-r", model / "requirements.txt"]
        times["a"] = timed([*pip, "mlserver", "mlserver-mlflow", "uvloop<0.22"], env={"PIP_CONFIG_FILE": os.devnull})
        ready, rss = mlserver_ready(work / "a", work / "c0/models", work / "a-run")
        times["pip-ready"], times["pip-rss"] = times["a"] + ready, rss
    try:
        times["b"] = timed([BIN / "mlflow", "models", "prepare-env", "-m", model, "--env-manager", "uv"],
                           env={**nocache, "MLFLOW_ENV_ROOT": str(work / "mlflow-envs")})  # fmt: skip
        notes["b"] = "model's requirements only: no MLServer"
    except RuntimeError as exc:
        times["b"], notes["b"] = None, f"failed: {str(exc).splitlines()[-1][:80]}"
    return times, notes, packages


def print_init_table(times: dict, notes: dict) -> None:
    print("| | what | seconds | vs (a) | vs raw uv | notes |")
    print("|---|---|---|---|---|---|")
    for key, what in INIT_ROWS:
        value = times.get(key)
        if value is None:
            print(f"| {key} | {what} | n/a | | | {notes.get(key, 'skipped')} |")
            continue
        vs_a = f"{times['a'] / value:.1f}x faster" if times.get("a") and key != "a" else ""
        print(f"| {key} | {what} | {value:.1f} | {vs_a} | {value / times['ref']:.2f}x | {notes.get(key, '')} |")


# -- the environment store ----------------------------------------------------------------------------------
TARGET_STORE = 1.5  # pod B from the store <= 1.5x a warm local-cache start
AFTER_BUILD = 75.0  # seconds between the build and the first start (see store_table)


@contextmanager
def s3_server() -> Iterator[dict[str, str]]:
    """A moto S3 server on localhost with the bucket ``bench`` (a process of its own: in this one it would share
    the interpreter lock with the output readers): the env a client needs to reach it."""
    import boto3

    port = next(PORTS)
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    env = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
           "MLFLOW_S3_ENDPOINT_URL": url, "AWS_ENDPOINT_URL_S3": url}  # fmt: skip
    try:
        client = boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="bench",
                              aws_secret_access_key="bench")  # fmt: skip
        for _ in range(600):
            try:
                client.create_bucket(Bucket="bench")
                break
            except Exception:  # not listening yet
                time.sleep(0.1)
        yield env
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def settle(seconds: float = 3.0) -> None:
    """Before each start: the file system's pending writes flushed (a venv written by the start before, still on
    its way to disk, would slow the next start's file creation, whichever arm it is), then a pause."""
    os.sync()
    time.sleep(seconds)


def store_table(model: Path, work: Path, runs: int) -> None:
    import boto3

    with s3_server() as env:
        uri = "s3://bench/environments"
        cache = work / "store-cache"
        build_s = timed([BIN / "mlflow-kserve", "build", "--model-uri", model, "--name", NAME, "--models-dir",
                         work / "build/models", "--env-dir", work / "build/env", "--cache-dir", cache, "--env-store",
                         uri], env=env)  # fmt: skip
        built = json.loads((work / "build/env/report.json").read_text())
        closed = f"http://127.0.0.1:{next(PORTS)}/simple"  # nothing listens there
        blocked = {**env, "UV_INDEX_URL": closed, "PIP_INDEX_URL": closed}
        local = work / "store-local"  # the same entry on a local path: the store without its network
        client = boto3.client("s3", endpoint_url=env["MLFLOW_S3_ENDPOINT_URL"], region_name="us-east-1",
                              aws_access_key_id="bench", aws_secret_access_key="bench")  # fmt: skip
        for item in client.list_objects_v2(Bucket="bench", Prefix="environments/")["Contents"]:
            target = local / item["Key"].removeprefix("environments/")
            target.parent.mkdir(parents=True, exist_ok=True)
            client.download_file("bench", item["Key"], str(target))
        warm_work = work / "store-warm"
        run_ready(model, warm_work, "auto", extra=("--cache-dir", str(cache)), env=env)  # the local cache, warm
        # Pod B is another node: its disk did not just build the venv. Right after a build, creating files on this
        # disk (ext4) is 3 to 5 times slower for about a minute (perf: ext4's inode allocator, find_inode_bit and
        # recently_deleted), which no other node pays: the starts wait that minute out.
        os.sync()
        time.sleep(AFTER_BUILD)
        arms: dict[str, list[dict]] = {"warm": [], "s3": [], "path": []}
        for index in range(runs):  # alternating, so the machine's load falls on every arm alike
            settle()
            arms["warm"].append(run_ready(model, warm_work, "auto", extra=("--cache-dir", str(cache)), env=env))
            for arm, store_uri in (("s3", uri), ("path", str(local))):
                flags = ("--env-store", store_uri, "--index-url", closed)
                settle()
                arms[arm].append(run_ready(model, work / f"store-{arm}-{index}", "auto", extra=flags, env=blocked))
    for arm in ("s3", "path"):
        for result in arms[arm]:
            assert result["facts"]["environment"]["source"] == "store", result["facts"]["store"]
    publish = built["store"]["seconds"]
    archive_mb = arms["s3"][0]["facts"]["store"]["archive_bytes"] / 1e6
    parts = arms["s3"][0]["facts"]["store"]["parts"]
    print(f"Environment store: {built['bytes']['venv'] / 1e6:.0f} MB venv ({len(built['packages'])} packages), "
          f"{archive_mb:.0f} MB archive in {parts} parts; build + publish {build_s:.1f}s "
          f"(pack {publish.get('publish_pack', 0):.1f}s, "
          f"upload {publish.get('publish_upload', 0):.1f}s)\n")  # fmt: skip
    print("| start | ready s | × warm | init s | server s | download s (last byte) | unpack s (last file) | "
          "each ready s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    labels = {"warm": "warm local cache (`run`, same work dir)",
              "s3": "pod B: env store on S3 (moto, localhost), fresh work dir, index at a closed port",
              "path": "pod B: the same entry on a local path (no network), fresh work dir, index closed"}  # fmt: skip
    base = statistics.median(r["ready"] for r in arms["warm"])
    for arm, results in arms.items():
        med = {k: statistics.median(r[k] for r in results) for k in ("ready", "init", "server")}
        store_s = [r["facts"]["store"]["seconds"] for r in results] if arm != "warm" else []
        parts = [f"{statistics.median(s[k] for s in store_s):.1f}" if store_s else "" for k in
                 ("download", "unpack")]  # fmt: skip
        print(f"| {labels[arm]} | {med['ready']:.1f} | {med['ready'] / base:.2f} | {med['init']:.1f} | "
              f"{med['server']:.1f} | {' | '.join(parts)} | " + ", ".join(f"{r['ready']:.1f}" for r in results)
              + " |")  # fmt: skip
    for arm in ("s3", "path"):
        ratio = statistics.median(r["ready"] for r in arms[arm]) / base
        print(f"- pod B ({arm}) ≤ {TARGET_STORE}x a warm local-cache start: {ratio:.2f}x "
              f"({'met' if ratio <= TARGET_STORE else 'not met'})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path, help="an MLflow model dir (default: train examples/iris)")
    parser.add_argument("--skip-pip", action="store_true", help="skip the slow hand-made pip install")
    parser.add_argument("--warm-runs", type=int, default=3, help="warm starts (and floors) per backend; medians")
    parser.add_argument("--requests", type=int, default=1000, help="V2 requests on the last warm start")
    parser.add_argument("--store-only", action="store_true", help="only the environment store's table")
    parser.add_argument("--work-dir", type=Path, help="where the starts write (default: a new folder in $TMPDIR); "
                        "pod B creates a venv's ~18,000 files there: on ext4 that is slower where many files were "
                        "deleted recently (docs/env-store.md)")  # fmt: skip
    args = parser.parse_args()
    if args.work_dir:
        args.work_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="coldstart-", dir=args.work_dir))
    model = args.model or train_iris(work / "iris-model")
    if args.store_only:
        store_table(model, work, args.warm_runs)
        shutil.rmtree(work, ignore_errors=True)
        return
    python = getattr(sys, "_base_executable", sys.executable)
    times, notes, packages = init_table(model, work, python, args.skip_pip)
    backends = {}
    for backend in ("auto", "mlserver"):
        result = ours(model, work / f"run-{backend}", backend, args.warm_runs, args.requests)
        label = f"{backend} (→ {result['cold']['backend']})" if backend == "auto" else f"--backend {backend}"
        backends[label] = result
    version, day = sys.version.split()[0], time.strftime("%Y-%m-%d")
    print(f"Model: {model.name} ({packages} packages with MLServer), Python {version}, {os.cpu_count()} cores, "
          f"one run on {day}\n")  # fmt: skip
    ready_table(times, backends, args.warm_runs, args.requests)
    print("\nInit alone\n")
    print_init_table(times, notes)
    print("\nEnvironment store\n")
    store_table(model, work / "store", args.warm_runs)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
