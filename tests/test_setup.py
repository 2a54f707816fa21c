"""`make setup`'s first step (ci/venv.sh) on the Pythons a newcomer has: it makes a venv with uv inside it with
`uv venv` when uv is on PATH, else with `python -m venv`, installs nothing into the interpreter itself (a PEP 668
distribution Python works), and says what to install when the interpreter cannot make a venv (Debian's and
Ubuntu's Python without python3-venv has no ensurepip)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BASE_PYTHON = str(getattr(sys, "_base_executable", None) or sys.executable)
TOOLS = ("bash", "dirname", "rm", "cut", "grep", "env")  # what ci/venv.sh runs besides Python and uv


def _bin(tmp_path: Path, python: str, *, uv: bool, shadow: Path | None = None) -> Path:
    """A PATH of its own: the tools, `python3` (``python``, with ``shadow`` put before its standard library), and
    uv only when asked."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool, path="/usr/bin:/bin")
        assert found, tool
        (folder / tool).symlink_to(found)
    wrapper = folder / "python3"
    env = f"PYTHONPATH={shadow} " if shadow else ""
    wrapper.write_text(f'#!/bin/sh\n{env}exec "{python}" "$@"\n')
    wrapper.chmod(0o755)
    if uv:
        (folder / "uv").symlink_to(Path(sys.executable).with_name("uv"))
    return folder


def _venv_sh(tmp_path: Path, path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": str(path), "VENV": str(tmp_path / "venv")}  # the machine's CA and index settings
    return subprocess.run(["bash", str(ROOT / "ci" / "venv.sh"), "python3"], env=env, capture_output=True, text=True,
                          timeout=600, stdin=subprocess.DEVNULL)  # fmt: skip


def test_a_python_without_ensurepip_names_the_package_to_install_and_makes_nothing(tmp_path: Path) -> None:
    """Debian's python3 without python3-venv: its venv module is there, ensurepip is not (here: shadowed)."""
    shadow = tmp_path / "shadow" / "ensurepip"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('ensurepip is not available')\n")
    proc = _venv_sh(tmp_path, _bin(tmp_path, BASE_PYTHON, uv=False, shadow=shadow.parent))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    minor = "{}.{}".format(*sys.version_info[:2])
    assert proc.stderr.strip() == (
        f"make setup: python3 cannot create a virtual environment: it has no ensurepip module; fix: sudo apt "
        f"install python{minor}-venv (Debian, Ubuntu), or install uv (https://docs.astral.sh/uv/), then make "
        "setup again"
    )
    assert not (tmp_path / "venv").exists(), "no half-made venv left behind"


@pytest.mark.e2e
@pytest.mark.parametrize("uv", [True, False], ids=["uv-venv", "python-m-venv"])
def test_makes_a_venv_with_uv_inside_and_reuses_it(uv: bool, tmp_path: Path) -> None:
    path = _bin(tmp_path, BASE_PYTHON, uv=uv)
    made = _venv_sh(tmp_path, path)
    assert made.returncode == 0, made.stdout + made.stderr
    assert made.stdout.startswith("==> creating ") and ("by uv venv" in made.stdout) == uv, made.stdout
    venv = tmp_path / "venv"
    assert subprocess.run([venv / "bin" / "uv", "--version"], capture_output=True, check=False).returncode == 0
    base = subprocess.run([venv / "bin" / "python", "-c", "import sys; print(sys.base_prefix)"], capture_output=True,
                          text=True, check=True).stdout.strip()  # fmt: skip
    given = subprocess.run([BASE_PYTHON, "-c", "import sys; print(sys.base_prefix)"], capture_output=True, text=True,
                           check=True).stdout.strip()  # fmt: skip
    assert base == given, "made from the Python it was given"
    again = _venv_sh(tmp_path, path)
    assert again.returncode == 0 and again.stdout.startswith(f"==> using {venv} (Python "), again.stdout
