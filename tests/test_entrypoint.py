"""server-image/entrypoint.sh picks the server report.json names and refuses what it cannot start, with a line
naming the cause. (It serving real models, both backends: test_cache_init.py and the e2e pod.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ENTRYPOINT = Path(__file__).resolve().parents[1] / "server-image" / "entrypoint.sh"


def _pod(tmp_path: Path, report: dict | None, *, lib: bool = False, mlserver: bool = False) -> dict[str, str]:
    """An /mnt/env whose venv is a real interpreter (the rest of the venv is not needed to refuse)."""
    env_dir = tmp_path / "env"
    (env_dir / "venv" / "bin").mkdir(parents=True)
    (env_dir / "venv" / "bin" / "python").symlink_to(getattr(sys, "_base_executable", sys.executable))
    if mlserver:
        script = env_dir / "venv" / "bin" / "mlserver"
        script.write_text('#!/bin/sh\necho "mlserver $*"; exit 3\n')
        script.chmod(0o755)
    if lib:
        (env_dir / "lib" / "mlflow_kserve_server").mkdir(parents=True)
        (env_dir / "lib" / "mlflow_kserve_server" / "__main__.py").write_text(
            "import os, sys; print('v2', sys.argv[1:], os.environ['PYTHONPATH']); sys.exit(3)\n"
        )
    if report is not None:
        (env_dir / "report.json").write_text(json.dumps(report))
    return {"PATH": "/usr/bin:/bin", "MLFLOW_KSERVE_ENV_DIR": str(env_dir),
            "MLFLOW_KSERVE_MODELS_DIR": str(tmp_path / "models"), "MLFLOW_KSERVE_WORK_DIR": str(tmp_path / "work"),
            "MLSERVER_METRICS_DIR": str(tmp_path / "metrics")}  # fmt: skip


def _start(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", str(ENTRYPOINT)], env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    ("backend", "kwargs", "started"),
    [
        ("mlflow", {"lib": True}, "v2 ['start', "),
        ("mlserver", {"mlserver": True}, "mlserver start "),
    ],
)
def test_starts_the_server_report_json_names(tmp_path: Path, backend: str, kwargs: dict, started: str) -> None:
    env = _pod(tmp_path, {"backend": {"name": backend}}, **kwargs)
    proc = _start(env)
    assert proc.returncode == 3, proc.stderr  # the server's own exit code
    assert proc.stdout.startswith(started), proc.stdout
    if backend == "mlflow":
        assert proc.stdout.rstrip().endswith(str(Path(env["MLFLOW_KSERVE_ENV_DIR"]) / "lib")), "PYTHONPATH"


def test_refuses_without_report_json(tmp_path: Path) -> None:
    proc = _start(_pod(tmp_path, None, lib=True))
    assert proc.returncode == 1
    assert "no complete environment" in proc.stderr and "kubectl logs -c model-init" in proc.stderr


def test_refuses_the_mlflow_backend_without_its_server_package(tmp_path: Path) -> None:
    proc = _start(_pod(tmp_path, {"backend": {"name": "mlflow"}}))
    assert proc.returncode == 1
    assert "no complete environment" in proc.stderr


def test_refuses_an_unknown_backend_naming_it(tmp_path: Path) -> None:
    proc = _start(_pod(tmp_path, {"backend": {"name": "tfserving"}}, lib=True, mlserver=True))
    assert proc.returncode == 1
    assert "names an unknown backend 'tfserving'" in proc.stderr


def test_starts_mlserver_on_a_folder_named_after_the_model_with_its_logging_settings(tmp_path: Path) -> None:
    """MLServer warns on every start when the model's name is not its settings folder's name (/mnt/models is
    "models"): it gets a folder named after the model, a link to the models dir, and the logging settings init
    wrote, unless the environment names its own."""
    env = _pod(tmp_path, {"backend": {"name": "mlserver"}, "name": "fraud"}, mlserver=True)
    script = Path(env["MLFLOW_KSERVE_ENV_DIR"], "venv", "bin", "mlserver")
    script.write_text('#!/bin/sh\necho "mlserver $* $MLSERVER_LOGGING_SETTINGS"; exit 3\n')
    logging = Path(env["MLFLOW_KSERVE_ENV_DIR"], "mlserver-logging.json")
    logging.write_text("{}")
    proc = _start(env)
    root = Path(env["MLFLOW_KSERVE_WORK_DIR"], "by-name", "fraud")
    assert proc.stdout.split() == ["mlserver", "start", str(root), str(logging)], proc.stderr
    assert root.resolve() == Path(env["MLFLOW_KSERVE_MODELS_DIR"]).resolve()
    own = _start({**env, "MLSERVER_LOGGING_SETTINGS": "/etc/mine.json"})
    assert own.stdout.split()[-1] == "/etc/mine.json", "the environment's own settings win"
