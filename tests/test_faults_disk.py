"""Fault suite: disk full. The env dir (the venv) or the models dir on a small tmpfs mounted for the test (root
only; skipped with the reason where the machine does not allow mounting): exit 7 or 3 naming the full volume,
nothing left looking ready, and the partial build removed (the space is given back)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from support import variants
from support.faults import Dirs, assert_fails, cli, planted
from support.models import BuiltModel

pytestmark = pytest.mark.timeout(1800)


@contextmanager
def small_filesystem(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a {size} tmpfs here ({mounted.stderr.decode().strip() or 'not root'})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.mark.e2e
def test_env_volume_full_during_install(models: dict[str, BuiltModel], tmp_path: Path) -> None:
    dirs = Dirs(tmp_path / "pod")
    with small_filesystem(dirs.env, "64m"):  # the iris venv is about 770 MB
        proc = cli("init", str(models["sklearn-columns"].path), dirs, planted(os.environ))
        assert_fails(proc, 7, dirs, "no space left on device while installing", "volumes.envSizeLimit")
        left = sorted(p.name for p in dirs.env.iterdir())
        assert left == [".mlflow-kserve.lock", "requirements.lock"], f"the partial build stays: {left}"


def test_models_volume_full_during_fetch(models: dict[str, BuiltModel], tmp_path: Path) -> None:
    model = variants.copy_model(models["sklearn-columns"].path, tmp_path / "model")
    (model / "weights.bin").write_bytes(os.urandom(4 * 1024 * 1024))
    dirs = Dirs(tmp_path / "pod")
    with small_filesystem(dirs.models, "2m"):
        proc = cli("init", str(model), dirs, planted(os.environ))
        assert_fails(proc, 3, dirs, "no space left on device while fetching", "volumes.modelsSizeLimit")
        assert list(dirs.models.iterdir()) == []
