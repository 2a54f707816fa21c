"""Step 4: build a venv from the lock, with hash checking. Two backends behind one small protocol
(pypa/build's habit): uv (default) and pip (fallback).

Every venv is relocatable, so it can be built in a temporary directory (or in the shared cache) and moved
into place only when complete: uv makes it so (``uv venv --relocatable``); for pip we rewrite the console
scripts' absolute shebangs to the same relative shim uv uses. ``bin/python`` stays a link to the base
interpreter, which exists at the same path in the init and the server image.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Protocol

from mlflow_kserve import procs
from mlflow_kserve.errors import ConfigError, InstallError
from mlflow_kserve.index import IndexConfig
from mlflow_kserve.tool_failures import index_or_disk_failure
from mlflow_kserve.tools import pip_env, uv_binary, uv_env

# Same trick as uv's relocatable scripts: find python next to the script, wherever the venv now lives.
RELOCATABLE_SHEBANG = "#!/bin/sh\n'''exec' \"$(dirname -- \"$(realpath -- \"$0\")\")\"/'python' \"$0\" \"$@\"\n' '''\n"
_PROGRESS = re.compile(r"^\s*(Resolved|Prepared|Installed|Bytecode compiled|Downloading|Successfully|Collecting)")
_HASH = re.compile(r"hash mismatch|THESE PACKAGES DO NOT MATCH THE HASHES|Hash mismatch", re.IGNORECASE)


class Installer(Protocol):
    name: str

    def create_venv(self, path: Path, python: str) -> None: ...

    def install(self, venv: Path, lock_file: Path, index: IndexConfig) -> None: ...


class UvInstaller:
    name = "uv"

    def __init__(self, cache_dir: Path | None = None) -> None:
        self.env = uv_env(cache_dir)

    def create_venv(self, path: Path, python: str) -> None:
        cmd = [uv_binary(), "venv", "--relocatable", "--python", python, "--no-project", "--quiet", path]
        _check_venv(procs.run(cmd, env=self.env), python)

    def install(self, venv: Path, lock_file: Path, index: IndexConfig) -> None:
        cmd = [
            uv_binary(), "pip", "install", "--python", venv / "bin" / "python", "--require-hashes",
            "--no-deps", "-r", lock_file, *index.uv_args(),
        ]  # fmt: skip
        _check(procs.run(cmd, env=self.env, progress=_is_progress), "uv")


class PipInstaller:
    name = "pip"

    def __init__(self, cache_dir: Path | None = None) -> None:
        self.env = pip_env(cache_dir)

    def create_venv(self, path: Path, python: str) -> None:
        _check_venv(procs.run([python, "-m", "venv", "--without-pip", path]), python)

    def install(self, venv: Path, lock_file: Path, index: IndexConfig) -> None:
        # The pip that runs mlflow-kserve installs into the target venv (pip >= 22.3 --python).
        cmd = [
            sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "--require-hashes",
            "--no-deps", "--no-compile", "-r", lock_file, *index.pip_args(),
        ]  # fmt: skip
        _check(procs.run(cmd, env=self.env, progress=_is_progress), "pip")
        make_scripts_relocatable(venv)


def make_installer(name: str, cache_dir: Path | None) -> Installer:
    return UvInstaller(cache_dir) if name == "uv" else PipInstaller(cache_dir)


def make_scripts_relocatable(venv: Path) -> None:
    """Rewrite ``#!<venv>/bin/python`` shebangs (pip writes absolute ones) to the relocatable shim."""
    prefix = f"#!{venv}/bin/python"
    for script in (venv / "bin").iterdir():
        if not script.is_file() or script.is_symlink():
            continue
        with script.open("rb") as fh:
            head = fh.readline()
        if not head.startswith(prefix.encode()):
            continue
        body = script.read_bytes()[len(head) :]
        script.write_bytes(RELOCATABLE_SHEBANG.encode() + body)


def _check_venv(result: procs.Result, python: str) -> None:
    if result.returncode != 0:
        raise ConfigError(
            f"cannot create a venv with {python!r}: {_last(result)}",
            "point --python at a working interpreter of the server image's Python",
        )


def _check(result: procs.Result, tool: str) -> None:
    if result.returncode == 0:
        return
    text = result.output
    if _HASH.search(text):
        raise InstallError(
            f"{tool} install failed: a downloaded file does not match the lock's hash ({_last(result)})",
            "the index serves different files than when locked: re-run init to re-lock, check index mirrors",
        )
    failure = index_or_disk_failure(text, tool, "installing")
    if failure is not None:
        raise failure
    raise InstallError(
        f"{tool} install failed: {_last(result)}",
        "see the log above; a package without a wheel for this Python needs a compiler: pin one with a wheel",
    )


def _last(result: procs.Result) -> str:
    lines = [re.sub(r"^\s*(?:error|cause|ERROR):\s*", "", ln).strip() for ln in result.lines]
    lines = [ln for ln in lines if ln and not ln.lower().startswith(("hint", "warning", "note"))]
    return lines[-1][:500] if lines else f"exit code {result.returncode}"


def _is_progress(line: str) -> bool:
    return bool(_PROGRESS.match(line))
