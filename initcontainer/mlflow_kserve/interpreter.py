"""Facts about the interpreter the model's venv is built from (it may differ from the one running us)."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from functools import lru_cache

from mlflow_kserve.errors import ConfigError

_PROBE = (
    "import json, platform, sys, sysconfig;"
    "print(json.dumps({'version': platform.python_version(), 'platform': sysconfig.get_platform(),"
    " 'libc': '-'.join(platform.libc_ver()), 'executable': sys.executable}))"
)


@dataclass(frozen=True)
class Interpreter:
    path: str
    version: str  # "3.11.7"
    platform: str  # "linux-x86_64-glibc-2.36": part of the environment cache key

    @property
    def minor(self) -> str:
        return ".".join(self.version.split(".")[:2])


@lru_cache(maxsize=8)
def probe(python: str) -> Interpreter:
    try:
        out = subprocess.run([python, "-c", _PROBE], capture_output=True, text=True, timeout=60, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        raise ConfigError(
            f"cannot run the interpreter {python!r} for the model's venv ({type(exc).__name__})",
            "point --python / MLFLOW_KSERVE_PYTHON at a working python3 executable",
        ) from exc
    facts = json.loads(out.stdout)
    return Interpreter(python, facts["version"], f"{facts['platform']}-{facts['libc']}")
