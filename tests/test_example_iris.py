"""The README's main job on the bundled example: train examples/iris, `mlflow-kserve run` it (auto: the mlflow
backend), send examples/iris/request.json. Also the other V2 shapes a column model accepts, and how `run` starts
the server: from the cache entry (held in use), or a copy; MLServer (asked for) with the environment's
MLSERVER_PARALLEL_WORKERS (its default, 0: tests/test_runner.py)."""

from __future__ import annotations

import copy
import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.cli import served
from support.services import free_port

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "iris"


@pytest.mark.e2e
@pytest.mark.timeout(900)
def test_bundled_iris_example_serves_the_readme_request(cli_env: dict[str, str], shared_cache: Path, tmp_path: Path):
    model = tmp_path / "iris-model"
    subprocess.run([sys.executable, EXAMPLE / "train.py", model], check=True, timeout=300, capture_output=True)
    assert (model / "MLmodel").is_file() and (model / "requirements.txt").is_file()
    request = json.loads((EXAMPLE / "request.json").read_text())
    as_columns = copy.deepcopy(request)  # shape [2, 1]: what the model's metadata advertises ([-1, 1])
    for item in as_columns["inputs"]:
        item["shape"] = [len(item["data"]), 1]
    as_frame = {**copy.deepcopy(request), "parameters": {"content_type": "pd"}}

    args = ["--model-uri", str(model), "--work-dir", str(tmp_path / "work"), "--cache-dir", str(shared_cache)]
    with served(args, cli_env, free_port(), "iris-model", tmp_path / "run.log") as server:
        for payload in (request, as_columns, as_frame):
            answer = server.infer(payload)
            assert [o["data"] for o in answer["outputs"]] == [[0, 2]], payload  # setosa, virginica
        venv = next((tmp_path / "work" / "models").glob("*/env/venv"))
        entry = venv.resolve().parent
        assert venv.is_symlink() and entry.parent == shared_cache / "envs", "served from the cache, nothing copied"
        assert not _can_lock(entry / "in-use"), "the entry is held in use while the server runs"
        assert "mlflow_kserve_server" in _server_cmdline(server.proc.pid), "auto: the mlflow backend"
    assert _can_lock(entry / "in-use"), "released once the server stopped"

    copy_env = {**cli_env, "MLSERVER_PARALLEL_WORKERS": "2"}
    work = ["--work-dir", str(tmp_path / "copy"), "--backend", "mlserver"]
    with served([*args[:2], *work, *args[4:], "--copy-from-cache"], copy_env, free_port(), "iris-model",
                tmp_path / "copy.log") as server:  # fmt: skip
        assert [o["data"] for o in server.infer(request)["outputs"]] == [[0, 2]]
        venv = next((tmp_path / "copy" / "models").glob("*/env/venv"))
        assert venv.is_dir() and not venv.is_symlink(), "--copy-from-cache: a copy"
        assert _can_lock(entry / "in-use"), "a copy holds no lock on the entry"
        assert "mlserver" in _server_cmdline(server.proc.pid)
        assert _server_env(server.proc.pid)["MLSERVER_PARALLEL_WORKERS"] == "2", "the environment's value wins"


def _can_lock(path: Path) -> bool:
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def _server_pid(run_pid: int) -> str:
    """The server `run` started (its only child)."""
    (child,) = Path(f"/proc/{run_pid}/task/{run_pid}/children").read_text().split()
    return child


def _server_env(run_pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{_server_pid(run_pid)}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def _server_cmdline(run_pid: int) -> str:
    return Path(f"/proc/{_server_pid(run_pid)}/cmdline").read_bytes().replace(b"\0", b" ").decode()
