"""The fault suite's shared checks (tests/test_faults_*.py): run the CLI as a subprocess with secrets planted in
its environment, then assert how it ended: the documented exit code, exactly one error line naming the cause
and the fix, no secret and no traceback anywhere in the output, and nothing left that looks ready."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from support.cli import MLFLOW_KSERVE

# Planted in every run's environment; none may appear in any output.
SECRETS = {
    "AWS_ACCESS_KEY_ID": "AKIAFAULTSUITE7Q3X",
    "AWS_SECRET_ACCESS_KEY": "faultsuite-aws-secret-k3y",
    "AWS_SESSION_TOKEN": "faultsuite-aws-session-t0ken",
    "MLFLOW_TRACKING_TOKEN": "faultsuite-tracking-t0ken",
}
INDEX_PASSWORD = "faultsuite-index-passw0rd"  # in index URLs: http://user:<this>@host/simple
URI_PASSWORD = "faultsuite-uri-passw0rd"  # in model URIs: http://user:<this>@host/…
ALL_SECRETS = (*SECRETS.values(), INDEX_PASSWORD, URI_PASSWORD)


def planted(base: Mapping[str, str], **extra: str) -> dict[str, str]:
    """``base`` with the secrets planted (moto accepts any AWS keys; the registry ignores the token)."""
    return {**base, **SECRETS, **extra}


@dataclass(frozen=True)
class Dirs:
    """One pod's volumes: --models-dir and --env-dir under ``root``."""

    root: Path

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def env(self) -> Path:
        return self.root / "env"

    def args(self) -> list[str]:
        return ["--models-dir", str(self.models), "--env-dir", str(self.env)]


def cli(command: str, uri: str, dirs: Dirs, env: Mapping[str, str], *extra: str, timeout: float = 900):
    return subprocess.run(
        [MLFLOW_KSERVE, command, "--model-uri", uri, *dirs.args(), *extra],
        env=dict(env), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("mlflow-kserve error:")]


def assert_fails(proc: subprocess.CompletedProcess[str], code: int, dirs: Dirs, *words: str) -> str:
    """The run exited ``code`` with one error line holding ``words`` and a fix; returns that line."""
    output = proc.stdout + proc.stderr
    assert proc.returncode == code, output[-3000:]
    lines = error_lines(proc.stderr)
    assert len(lines) == 1, output[-3000:]
    line = lines[0]
    assert "; fix: " in line and len(line) < 2500, line
    for word in words:
        assert word in line, line
    assert_clean(output)
    assert_nothing_ready(dirs)
    return line


def assert_clean(output: str, *more_secrets: str) -> None:
    assert "Traceback" not in output, output[-3000:]
    for secret in (*ALL_SECRETS, *more_secrets):
        assert secret not in output


def assert_nothing_ready(dirs: Dirs) -> None:
    assert not (dirs.env / "report.json").exists()
    assert not (dirs.models / "model-settings.json").exists()
    assert not (dirs.env / "venv").exists()
    if dirs.env.exists():
        assert not list(dirs.env.rglob("pyvenv.cfg")), "a venv (or a build of one) was left behind"


def assert_ready(proc: subprocess.CompletedProcess[str], dirs: Dirs) -> None:
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert_clean(output)
    assert (dirs.env / "report.json").is_file() and (dirs.models / "model-settings.json").is_file()
    assert (dirs.env / "venv" / "pyvenv.cfg").is_file()


# -- processes --------------------------------------------------------------------------------------------------
def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children of children too), from /proc."""
    out: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                kids = [int(k) for k in (task / "children").read_text().split()]
            except OSError:
                continue
            out += kids
            todo += kids
    return out


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def wait_until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)
