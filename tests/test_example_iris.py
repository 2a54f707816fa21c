"""The README's main job on the bundled example: train examples/iris, `mlflow-kserve run` it (auto: the mlflow
backend), send examples/iris/request.json. Also the other V2 shapes a column model accepts, and how `run` starts
the server: from the cache entry (held in use), or a copy; MLServer (asked for) with the environment's
MLSERVER_PARALLEL_WORKERS (its default, 0: tests/test_runner.py); how it stops (130 on Ctrl-C, 143 on SIGTERM)
and what it prints then: one line per event. And `make demo`'s script as a newcomer sees it: each step announced,
the server's "ready" line before the answer."""

from __future__ import annotations

import copy
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from support.cli import assert_one_line_per_event, served
from support.services import free_port

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "iris"


@pytest.fixture(scope="module")
def iris_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/iris/train.py's model, trained once for this module; training prints no warning (MLflow warns
    about pickle formats: the example saves skops)."""
    model = tmp_path_factory.mktemp("iris") / "iris-model"
    trained = subprocess.run([sys.executable, EXAMPLE / "train.py", model], check=True, timeout=300,
                             capture_output=True, text=True)  # fmt: skip
    assert "WARNING" not in trained.stderr and "pickle" not in trained.stdout + trained.stderr, trained.stderr
    assert (model / "MLmodel").is_file() and (model / "requirements.txt").is_file()
    return model


@pytest.mark.e2e
@pytest.mark.timeout(900)
def test_bundled_iris_example_serves_the_readme_request(
    iris_model: Path, cli_env: dict[str, str], shared_cache: Path, tmp_path: Path
) -> None:
    model = iris_model
    request = json.loads((EXAMPLE / "request.json").read_text())
    as_columns = copy.deepcopy(request)  # shape [2, 1]: what the model's metadata advertises ([-1, 1])
    for item in as_columns["inputs"]:
        item["shape"] = [len(item["data"]), 1]
    as_frame = {**copy.deepcopy(request), "parameters": {"content_type": "pd"}}

    args = ["--model-uri", str(model), "--work-dir", str(tmp_path / "work"), "--cache-dir", str(shared_cache)]
    with served(args, cli_env, free_port(), "iris-model", tmp_path / "run.log") as server:
        assert "backend mlflow" in server.output(), "auto serves this model with the mlflow backend: its log says so"
        for payload in (request, as_columns, as_frame):
            answer = server.infer(payload)
            assert [o["data"] for o in answer["outputs"]] == [[0, 2]], payload  # setosa, virginica
        venv = next((tmp_path / "work" / "models").glob("*/env/venv"))
        entry = venv.resolve().parent
        assert venv.is_symlink() and entry.parent == shared_cache / "envs", "served from the cache, nothing copied"
        assert not _can_lock(entry / "in-use"), "the entry is held in use while the server runs"
        assert "mlflow_kserve_server" in _server_cmdline(server.proc.pid), "auto: the mlflow backend"
    assert _can_lock(entry / "in-use"), "released once the server stopped"
    assert server.proc.returncode == 130, "Ctrl-C: the exit-code table's 130"
    assert_one_line_per_event(server, "SIGINT")

    copy_env = {**cli_env, "MLSERVER_PARALLEL_WORKERS": "2"}
    work = ["--work-dir", str(tmp_path / "copy"), "--backend", "mlserver"]
    with served([*args[:2], *work, *args[4:], "--copy-from-cache"], copy_env, free_port(), "iris-model",
                tmp_path / "copy.log", stop_signal=signal.SIGTERM) as server:  # fmt: skip
        assert [o["data"] for o in server.infer(request)["outputs"]] == [[0, 2]]
        venv = next((tmp_path / "copy" / "models").glob("*/env/venv"))
        assert venv.is_dir() and not venv.is_symlink(), "--copy-from-cache: a copy"
        assert _can_lock(entry / "in-use"), "a copy holds no lock on the entry"
        assert "mlserver" in _server_cmdline(server.proc.pid)
        assert _server_env(server.proc.pid)["MLSERVER_PARALLEL_WORKERS"] == "2", "the environment's value wins"
    assert server.proc.returncode == 143, "SIGTERM: the exit-code table's 143"
    assert_one_line_per_event(server, "SIGTERM", whole_log=False)  # two inference workers log their own loads


@pytest.mark.e2e
@pytest.mark.timeout(900)
def test_make_demo_steps_print_ready_before_the_answer(iris_model: Path, shared_cache: Path, tmp_path: Path) -> None:
    """What `make demo` runs after `make setup`: examples/iris/demo.py (its own work dir and port here, the
    session's cache through run's env var, as a user could set it; the model trained above, which the demo
    takes as trained before)."""
    shutil.copytree(iris_model, tmp_path / "iris-model")
    port = free_port()
    env = {**os.environ, "MLFLOW_KSERVE_CACHE_DIR": str(shared_cache)}
    proc = subprocess.run([sys.executable, EXAMPLE / "demo.py", "--work-dir", tmp_path, "--port", str(port)], env=env,
                          capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)  # fmt: skip
    out = proc.stdout
    assert proc.returncode == 0, out[-4000:] + proc.stderr[-2000:]
    steps = [line for line in out.splitlines() if line.startswith("==> ")]
    assert [s.split(":")[0] for s in steps] == [
        "==> the iris model trained before", "==> serving it", "==> sending examples/iris/request.json to http",
        "==> stopping the server (Ctrl-C, as you would)",
    ]  # fmt: skip
    assert out.index("[serve] ready in") < out.index("answer:") < out.index("OK: setosa, virginica")
    assert "[serve] stopped by SIGINT" in out


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
