"""Fault suite: SIGTERM and SIGKILL at each step (fetch, lock, install, verify), sent to the whole process group
or to the CLI alone (its uv or verify child, orphaned by a SIGKILL, keeps writing), each followed by a re-run
that succeeds; and two inits racing on one --env-dir (one wins cleanly, never a corrupt venv or a traceback).

Re-runs share one uv download cache (UV_CACHE_DIR, as an operator may set it) so they install from disk."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from support.cli import MLFLOW_KSERVE
from support.faults import Dirs, assert_clean, assert_ready, cli, cmdline, descendants, error_lines, planted, wait_until
from support.models import BuiltModel
from support.services import artifact_http_server, kill_group

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]


def _child_running(pid: int, fragment: str) -> Callable[[], bool]:
    return lambda: any(fragment in cmdline(child) for child in descendants(pid))


# step -> what shows the CLI is in it: a line of its log, or a child process doing the step's work
STEPS: dict[str, Callable[[int, Path], Callable[[], bool]]] = {
    "fetch": lambda pid, log: lambda: "[fetch] fetching" in log.read_text(),
    "lock": lambda pid, log: _child_running(pid, "pip compile"),
    "install": lambda pid, log: _child_running(pid, "pip install"),
    "verify": lambda pid, log: _child_running(pid, "mlflow.pyfunc"),
}


@pytest.fixture(scope="module")
def uv_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("uv-cache")


@contextmanager
def _model_uri(step: str, model: Path) -> Iterator[str]:
    """A slow store for the fetch step (each file after a second), else the local model."""
    if step != "fetch":
        yield str(model)
        return
    with artifact_http_server(model.parent, delay=1.0) as server:
        yield server.uri(model.name)


@pytest.mark.parametrize("target", ["group", "cli-alone"])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
@pytest.mark.parametrize("step", list(STEPS))
def test_stopped_at_a_step_then_a_rerun_succeeds(
    step: str, sig: signal.Signals, target: str, models: dict[str, BuiltModel], tmp_path: Path, uv_cache: Path
) -> None:
    dirs = Dirs(tmp_path / "pod")
    env = planted(os.environ, UV_CACHE_DIR=str(uv_cache))
    log = tmp_path / "first.log"
    with _model_uri(step, models["sklearn-columns"].path) as uri:
        with log.open("w") as out:
            proc = subprocess.Popen(
                [MLFLOW_KSERVE, "init", "--model-uri", uri, *dirs.args()],
                env=env, stdout=out, stderr=subprocess.STDOUT, text=True, start_new_session=True,
            )  # fmt: skip
        try:
            wait_until(STEPS[step](proc.pid, log), 900, f"the {step} step")
            if target == "group":
                os.killpg(proc.pid, sig)
            else:
                os.kill(proc.pid, sig)
            code = proc.wait(timeout=300)
            output = log.read_text()
            assert code == (-9 if sig == signal.SIGKILL else 143), output[-3000:]
            if sig == signal.SIGTERM:
                assert error_lines(output)[-1].startswith("mlflow-kserve error: stopped by SIGTERM"), output[-2000:]
            assert_clean(output)
            assert not (dirs.env / "report.json").exists() and not (dirs.env / "venv").exists()
            # the re-run, while an orphaned installer of the first may still be writing
            rerun = cli("init", uri, dirs, env)
            assert_ready(rerun, dirs)
        finally:
            kill_group(proc.pid)  # the first run and anything it orphaned
    leftovers = [p.name for p in dirs.env.iterdir() if p.name.startswith((".venv-build", ".tool-cache"))]
    assert (sig == signal.SIGKILL and target == "cli-alone") or not leftovers, leftovers


def test_two_inits_racing_on_one_env_dir(models: dict[str, BuiltModel], tmp_path: Path, uv_cache: Path) -> None:
    dirs = Dirs(tmp_path / "pod")
    env = planted(os.environ, UV_CACHE_DIR=str(uv_cache))
    args = [MLFLOW_KSERVE, "init", "--model-uri", str(models["sklearn-columns"].path), *dirs.args()]
    racers = [subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in "ab"]
    results = [(racer.wait(timeout=1500), *racer.communicate()) for racer in racers]
    codes = sorted(code for code, _out, _err in results)
    assert codes in ([0, 0], [0, 2]), [err[-2000:] for _code, _out, err in results]
    for code, out, err in results:
        assert_clean(out + err)
        if code == 2:
            [line] = error_lines(err)
            assert "another mlflow-kserve (pid" in line and f"is using --env-dir {dirs.env}" in line, line
    check = subprocess.run(
        [dirs.env / "venv" / "bin" / "python", "-c", "import mlflow.pyfunc, mlflow_kserve_server.app"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(dirs.env / "lib")},
    )  # fmt: skip
    assert check.returncode == 0, check.stderr[-2000:]
    assert (dirs.env / "report.json").is_file()
