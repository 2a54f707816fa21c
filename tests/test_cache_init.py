"""Six `mlflow-kserve init --backend mlserver` processes start at once on one model and one cache dir (replicas
scaling up together): all succeed, the cache holds one entry, and every venv serves the model through MLServer.
--serve-from-cache: the server image's entrypoint runs the venv (auto: the mlflow backend) from the cache entry and
keeps it from eviction. Then --slim under MLServer: the same model with mlflow-skinny instead of mlflow, a smaller
venv that still serves (the mlflow backend's --slim: test_backend_mlflow.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests
from mlflow_kserve.cache import EnvCache
from support.cli import MLFLOW_KSERVE, mlflow_kserve, report, served, v2_request, wait_ready
from support.models import BuiltModel
from support.services import free_port, stop


def _serve_once(env_dir: Path, models_dir: Path, model: BuiltModel) -> list[float]:
    port, pod = free_port(), env_dir.parent
    proc = subprocess.Popen([env_dir / "venv" / "bin" / "mlserver", "start", models_dir], env=_mlserver_env(port, pod),
                            cwd=pod, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/v2/models/iris"
        wait_ready(proc, url, 120, lambda: "MLServer exited")
        answer = requests.post(f"{url}/infer", json=v2_request(model.expected), timeout=60).json()
        return answer["outputs"][0]["data"]
    finally:
        stop(proc)


def _mlserver_env(port: int, work: Path) -> dict[str, str]:
    return {
        **os.environ,
        "MLSERVER_HTTP_PORT": str(port),
        "MLSERVER_GRPC_PORT": str(free_port()),
        "MLSERVER_METRICS_PORT": str(free_port()),
        "MLSERVER_METRICS_DIR": str(work / "metrics"),
    }


@pytest.mark.e2e
def test_six_replicas_share_one_cache_entry(models: dict[str, BuiltModel], tmp_path: Path) -> None:
    model = models["sklearn-columns"]
    cache = tmp_path / "cache"
    procs = []
    for i in range(6):
        pod = tmp_path / f"pod{i}"
        args = ["init", "--model-uri", str(model.path), "--name", "iris", "--models-dir", str(pod / "models"),
                "--env-dir", str(pod / "env"), "--cache-dir", str(cache), "--backend", "mlserver"]  # fmt: skip
        log = (tmp_path / f"pod{i}.log").open("w")
        procs.append((subprocess.Popen([MLFLOW_KSERVE, *args], stdout=log, stderr=subprocess.STDOUT), log))
    for proc, log in procs:
        assert proc.wait(timeout=900) == 0, Path(log.name).read_text()[-2000:]
        log.close()
    assert len(list((cache / "envs").iterdir())) == 1
    reports = [json.loads((tmp_path / f"pod{i}" / "env" / "report.json").read_text()) for i in range(6)]
    assert sorted(r["cache"]["hit"] for r in reports) == [False] + [True] * 5
    for i in range(6):
        pod = tmp_path / f"pod{i}"
        assert _serve_once(pod / "env", pod / "models", model) == pytest.approx(model.expected["output"])


ENTRYPOINT = Path(__file__).resolve().parents[1] / "server-image" / "entrypoint.sh"


def _start_server(pod: Path, port: int) -> subprocess.Popen[str]:
    env = {
        **_mlserver_env(port, pod),
        "MLFLOW_KSERVE_SERVER_PORT": str(port),
        "MLFLOW_KSERVE_SERVER_METRICS_PORT": str(free_port()),
        "MLFLOW_KSERVE_ENV_DIR": str(pod / "env"),
        "MLFLOW_KSERVE_MODELS_DIR": str(pod / "models"),
        "MLFLOW_KSERVE_WORK_DIR": str(pod / "work"),
    }
    return subprocess.Popen(["sh", ENTRYPOINT], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.mark.e2e
def test_server_runs_the_venv_from_the_cache_entry_and_keeps_it(models: dict[str, BuiltModel], tmp_path: Path) -> None:
    model, pod, cache_dir = models["sklearn-columns"], tmp_path / "pod", tmp_path / "cache"
    args = ["init", "--model-uri", str(model.path), "--name", "iris", "--models-dir", str(pod / "models"),
            "--env-dir", str(pod / "env"), "--cache-dir", str(cache_dir), "--serve-from-cache"]  # fmt: skip
    done = mlflow_kserve(args, os.environ)
    assert done.returncode == 0, done.stderr[-2000:]
    venv = pod / "env" / "venv"
    entry = (cache_dir / "envs").resolve() / next(p.name for p in (cache_dir / "envs").iterdir())
    assert venv.is_symlink() and venv.resolve() == entry / "venv"
    assert report(pod / "env")["venv"] == str(entry / "venv")
    assert report(pod / "env")["backend"]["name"] == "mlflow", "auto"

    port = free_port()
    url = f"http://127.0.0.1:{port}/v2/models/iris"
    server = _start_server(pod, port)
    try:
        wait_ready(server, url, 180, lambda: server.stderr.read() if server.stderr else "")
        old = time.time() - 3600  # past the grace period: only the server's lock protects the entry now
        os.utime(entry / "entry.json", (old, old))
        assert EnvCache(cache_dir, max_bytes=1).evict() == [], "the running server's entry is not evicted"
        answer = requests.post(f"{url}/infer", json=v2_request(model.expected), timeout=60).json()
        assert answer["outputs"][0]["data"] == pytest.approx(model.expected["output"])
    finally:
        stop(server, signal.SIGTERM, 60)
    assert EnvCache(cache_dir, max_bytes=1).evict() == [entry.name], "with its server stopped it can go"
    restarted = _start_server(pod, free_port())
    _out, err = restarted.communicate(timeout=60)
    assert restarted.returncode == 1
    assert "the cached environment" in err and "is missing" in err and "Delete the pod" in err, err


@pytest.mark.e2e
def test_slim_serves_with_mlflow_skinny(models: dict[str, BuiltModel], tmp_path: Path, shared_cache: Path) -> None:
    model = models["sklearn-columns"]
    args = ["--model-uri", str(model.path), "--work-dir", str(tmp_path / "work"), "--slim", "--backend", "mlserver"]
    with served(args, dict(os.environ), free_port(), "iris", tmp_path / "run.log") as server:
        answer = server.infer(v2_request(model.expected))
        env_dir = next((tmp_path / "work" / "models").glob("*/env"))
        facts = json.loads((env_dir / "report.json").read_text())
    assert answer["outputs"][0]["data"] == pytest.approx(model.expected["output"])
    assert facts["slim"] is True and facts["backend"]["name"] == "mlserver"
    assert "mlflow" not in facts["packages"]
    assert facts["packages"]["mlflow-skinny"] == model.expected["mlflow"]
