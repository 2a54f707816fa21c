"""Both installer backends build a venv from a hashed lock, and the venv still works after being moved
(the pipeline builds in a temp dir or the cache and renames into place)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow_kserve.errors import InstallError
from mlflow_kserve.index import IndexConfig
from mlflow_kserve.installers import make_installer
from mlflow_kserve.lock import LockRequest, resolve


@pytest.fixture(scope="module")
def wheel_lock(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # `wheel` ships a console script: the part that is not relocatable by default.
    lock = resolve(LockRequest(("wheel==0.45.1",)), "uv")
    path = tmp_path_factory.mktemp("lock") / "requirements.lock"
    lock.write(path)
    return path


@pytest.mark.network
@pytest.mark.parametrize("name", ["uv", "pip"])
def test_venv_is_complete_and_relocatable(name: str, wheel_lock: Path, tmp_path: Path) -> None:
    installer = make_installer(name, tmp_path / "cache")
    built = tmp_path / "build" / "venv"
    installer.create_venv(built, sys.executable)
    installer.install(built, wheel_lock, IndexConfig())
    moved = tmp_path / "final" / "venv"
    moved.parent.mkdir()
    shutil.move(built, moved)
    assert not built.exists()
    out = subprocess.run([moved / "bin" / "wheel", "version"], capture_output=True, text=True, check=True)
    assert "0.45.1" in out.stdout
    # No bytecode yet: the verify step writes it for the modules the model and MLServer import.
    assert not list((moved / "lib").glob("python3*/site-packages/wheel/__pycache__/*.pyc"))


@pytest.mark.network
@pytest.mark.parametrize("name", ["uv", "pip"])
def test_hash_mismatch_is_an_install_failure(name: str, wheel_lock: Path, tmp_path: Path) -> None:
    tampered = tmp_path / "requirements.lock"
    text = wheel_lock.read_text()
    tampered.write_text(text.replace("sha256:", "sha256:0", 1).replace("sha256:", "sha256:0"))
    installer = make_installer(name, None)
    venv = tmp_path / "venv"
    installer.create_venv(venv, sys.executable)
    with pytest.raises(InstallError) as info:
        installer.install(venv, tampered, IndexConfig())
    assert info.value.exit_code == 7
