"""What the benchmarks share: the bundled iris model, a server process timed until its V2 model is ready (with
the time each log line appeared), and the memory of a process tree. Not a test; nothing here asserts a time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def train_iris(dest: Path) -> Path:
    """examples/iris/train.py into ``dest`` (the model every benchmark uses unless given --model)."""
    subprocess.run([sys.executable, ROOT / "examples" / "iris" / "train.py", dest], check=True, capture_output=True)
    return dest


def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and every descendant (MLServer may run its model in worker processes)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
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


class Server:
    """``cmd`` started now; :meth:`wait_ready` polls /v2/models/<name>/ready every 50 ms. Its output is read
    as it comes, each line with the seconds since the start, so a log line marks a phase (:meth:`seen`)."""

    def __init__(self, cmd: list[str | Path], port: int, name: str, env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> None:  # fmt: skip
        self.url = f"http://127.0.0.1:{port}/v2/models/{name}"
        self.lines: list[tuple[float, str]] = []
        self.started = time.monotonic()
        self.proc = subprocess.Popen([str(c) for c in cmd], env={**os.environ, **(env or {})}, cwd=cwd,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append((time.monotonic() - self.started, line.rstrip()))

    def wait_ready(self, timeout: float = 900.0) -> float:
        """Seconds from the start until the model answered ready."""
        while time.monotonic() - self.started < timeout:
            try:
                with urllib.request.urlopen(f"{self.url}/ready", timeout=2) as response:
                    if response.status == 200:
                        return time.monotonic() - self.started
            except OSError:
                pass
            if self.proc.poll() is not None:
                tail = "\n".join(line for _, line in self.lines[-20:])
                raise RuntimeError(f"{self.proc.args[0]} exited {self.proc.returncode} before ready:\n{tail}")
            time.sleep(0.05)
        raise RuntimeError(f"not ready after {timeout:.0f}s")

    def seen(self, text: str) -> float | None:
        """Seconds from the start to the first output line containing ``text``."""
        return next((at for at, line in self.lines if text in line), None)

    def server_rss(self, own: bool = False) -> int:
        """RSS of the server: this process's tree (``own``), or its children's (a launcher like `run` is not
        the server)."""
        if own:
            return tree_rss(self.proc.pid)
        try:
            kids = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        except OSError:
            kids = []
        return sum(tree_rss(int(kid)) for kid in kids)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=10)
