"""The V2 client SDKs users run, each in a venv of its own (their protobuf stubs clash in one process), built once
and kept in .cache/venvs like the model builders (file-locked: concurrent sessions build once), and driven from
pytest through one long-lived process per SDK that speaks JSON lines (support/v2client.py): a request costs a
pipe round trip, not an interpreter start and the SDK's imports (1-2 s each)."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock
from mlflow_kserve.tools import uv_binary

from support.models import CACHE, _digest, _python

SCRIPT = Path(__file__).with_name("v2client.py")
# sdk -> pins: the versions the clients are (tritonclient 2.73, KServe 0.21)
CLIENTS: dict[str, tuple[str, ...]] = {
    "triton": ("tritonclient[http,grpc]==2.73.0",),
    "kserve": ("kserve==0.21.0",),
}


def client_python(sdk: str) -> Path:
    """The python of ``sdk``'s venv, installed on first use."""
    venv = CACHE / "venvs" / f"client-{sdk}-{_digest(CLIENTS[sdk])}"
    python = venv / "bin" / "python"
    with FileLock(str(venv) + ".lock"):
        if not (venv / ".complete").exists():
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([uv_binary(), "venv", "-q", "--python", _python(), venv], check=True)
            subprocess.run([uv_binary(), "pip", "install", "-q", "--python", python, *CLIENTS[sdk]], check=True,
                           timeout=900)  # fmt: skip
            (venv / ".complete").touch()
    return python


@dataclass
class ClientError:
    type: str
    status: str  # "400", or a gRPC code name: "INVALID_ARGUMENT"
    message: str
    parsed: bool  # the SDK read the server's error body


class ClientProcess:
    """One SDK's process. ``call`` returns the result, or a ClientError when the SDK raised."""

    def __init__(self, sdk: str, log: Path) -> None:
        self.sdk = sdk
        self._log = log.open("w")
        self.proc = subprocess.Popen([str(client_python(sdk)), str(SCRIPT), sdk], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._log, text=True, bufsize=1)  # fmt: skip
        self._read()  # "ready": the SDK imported

    def call(self, **request: Any) -> Any:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        answer = self._read()
        if answer["ok"]:
            return answer["result"]
        error = answer["error"]
        return ClientError(error["type"], error["status"], error["message"], error["parsed"])

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self._log.flush()
            raise RuntimeError(f"the {self.sdk} client exited {self.proc.wait()}: {Path(self._log.name).read_text()}")
        return json.loads(line)

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()
