"""Six `mlflow-kserve init` processes start at once on one model and one cache dir (replicas scaling up
together): all succeed, the cache holds one entry, and every venv serves the model through MLServer.
Then --slim: the same model with mlflow-skinny instead of mlflow, a smaller venv that still serves."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import requests
from support.cli import MLFLOW_KSERVE, served, v2_request
from support.models import BuiltModel
from support.services import free_port


def _serve_once(env_dir: Path, models_dir: Path, model: BuiltModel) -> list[float]:
    port = free_port()
    env = {
        **os.environ,
        "MLSERVER_HTTP_PORT": str(port),
        "MLSERVER_GRPC_PORT": str(free_port()),
        "MLSERVER_METRICS_PORT": str(free_port()),
        "MLSERVER_METRICS_DIR": str(env_dir.parent / "metrics"),
    }
    proc = subprocess.Popen([env_dir / "venv" / "bin" / "mlserver", "start", models_dir], env=env, cwd=env_dir.parent,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/v2/models/iris"
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, "MLServer exited"
            try:
                if requests.get(f"{url}/ready", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline
            time.sleep(0.3)
        answer = requests.post(f"{url}/infer", json=v2_request(model.expected), timeout=60).json()
        return answer["outputs"][0]["data"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.e2e
def test_six_replicas_share_one_cache_entry(models: dict[str, BuiltModel], tmp_path: Path) -> None:
    model = models["sklearn-columns"]
    cache = tmp_path / "cache"
    procs = []
    for i in range(6):
        pod = tmp_path / f"pod{i}"
        args = ["init", "--model-uri", str(model.path), "--name", "iris", "--models-dir", str(pod / "models"),
                "--env-dir", str(pod / "env"), "--cache-dir", str(cache)]  # fmt: skip
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


@pytest.mark.e2e
def test_slim_serves_with_mlflow_skinny(models: dict[str, BuiltModel], tmp_path: Path, shared_cache: Path) -> None:
    model = models["sklearn-columns"]
    args = ["--model-uri", str(model.path), "--work-dir", str(tmp_path / "work"), "--slim"]
    with served(args, dict(os.environ), free_port(), "iris", tmp_path / "run.log") as server:
        answer = server.infer(v2_request(model.expected))
        env_dir = next((tmp_path / "work" / "models").glob("*/env"))
        facts = json.loads((env_dir / "report.json").read_text())
    assert answer["outputs"][0]["data"] == pytest.approx(model.expected["output"])
    assert facts["slim"] is True
    assert "mlflow" not in facts["packages"]
    assert facts["packages"]["mlflow-skinny"] == model.expected["mlflow"]
