"""Facts about the interpreter the model's venv is built from (it may differ from the one running us)."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from functools import lru_cache

from mlflow_kserve.errors import ConfigError

# The marker environment is packaging.markers.default_environment()'s, computed with the standard library (the
# interpreter need not have packaging): a model's lock is selected for it (modellock.py).
_PROBE = (
    "import json, os, platform, sys, sysconfig;"
    "i = sys.implementation.version;"
    "iv = f'{i.major}.{i.minor}.{i.micro}' + (i.releaselevel[0] + str(i.serial) if i.releaselevel != 'final' else '');"
    "markers = {'implementation_name': sys.implementation.name, 'implementation_version': iv,"
    " 'os_name': os.name, 'platform_machine': platform.machine(), 'platform_release': platform.release(),"
    " 'platform_system': platform.system(), 'platform_version': platform.version(),"
    " 'python_full_version': platform.python_version(),"
    " 'platform_python_implementation': platform.python_implementation(),"
    " 'python_version': '.'.join(platform.python_version_tuple()[:2]), 'sys_platform': sys.platform};"
    "print(json.dumps({'version': platform.python_version(), 'platform': sysconfig.get_platform(),"
    " 'libc': '-'.join(platform.libc_ver()), 'executable': sys.executable, 'markers': markers}))"
)


@dataclass(frozen=True)
class Interpreter:
    path: str
    version: str  # "3.11.7"
    platform: str  # "linux-x86_64-glibc-2.36": part of the environment cache key
    markers: tuple[tuple[str, str], ...] = ()  # PEP 508 marker environment (default_environment()'s keys)

    @property
    def marker_environment(self) -> dict[str, str]:
        return dict(self.markers)

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
    markers = tuple(sorted((str(k), str(v)) for k, v in facts["markers"].items()))
    return Interpreter(python, facts["version"], f"{facts['platform']}-{facts['libc']}", markers)
