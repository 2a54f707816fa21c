"""Run a tool (uv, pip, the venv's python) as a subprocess, streaming its output into our log."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from mlflow_kserve.logs import get_logger

_live: set[subprocess.Popen[str]] = set()  # children running now, for stop_all()
# Tools wrap their messages at the caller's terminal width (uv's errors follow COLUMNS; pytest-xdist sets 80). Their
# output is read by this program, which classifies failures from it, so no child sees a terminal size.
_TERMINAL_SIZE = ("COLUMNS", "LINES")
_live_lock = threading.Lock()


@dataclass(frozen=True)
class Result:
    returncode: int
    output: str  # stdout and stderr interleaved

    @property
    def lines(self) -> list[str]:
        return [line for line in self.output.splitlines() if line.strip()]


def run(
    cmd: Sequence[str | Path],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float | None = None,
    progress: Callable[[str], bool] | None = None,
) -> Result:
    """Run ``cmd``; each output line is logged at debug, or at info when ``progress(line)`` is true.

    Never raises for a non-zero exit: the caller classifies the failure from ``Result``.
    """
    log = get_logger("proc")
    full_env = {k: v for k, v in {**os.environ, **(env or {})}.items() if k not in _TERMINAL_SIZE}
    log.debug("running %s", " ".join(str(c) for c in cmd))
    proc = subprocess.Popen(
        [str(c) for c in cmd],
        env=full_env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
    )
    with _live_lock:
        _live.add(proc)
    captured: list[str] = []
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            line = line.rstrip("\n")
            captured.append(line)
            if progress is not None and progress(line):
                log.info("%s", line.strip())
            else:
                log.debug("%s", line)
        returncode = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        captured.append(f"timed out after {timeout:.0f}s")
        returncode = -9
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        with _live_lock:
            _live.discard(proc)
    return Result(returncode, "\n".join(captured))


def stop_all() -> None:
    """SIGKILL every child still running (uv, pip, the verify step's pythons): when this process is told to
    stop, nothing it started keeps writing into the env dir. Safe in a signal handler: it only sends signals."""
    for proc in list(_live):
        try:
            proc.send_signal(signal.SIGKILL)
        except OSError:
            pass
