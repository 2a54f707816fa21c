"""How `mlflow-kserve run` starts each backend's server from the venv (runner.server_command), without starting it:
the command, the ports and the environment."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow_kserve.runner import server_command
from mlflow_kserve.settings import Settings


def _settings(tmp_path: Path) -> Settings:
    return Settings.from_options(model_uri="/models/iris", models_dir=str(tmp_path / "m"), env_dir=str(tmp_path / "e"))


def test_mlserver_runs_inference_in_its_own_process_unless_the_environment_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLSERVER_PARALLEL_WORKERS", raising=False)
    cmd, env = server_command(_settings(tmp_path), "mlserver", tmp_path, port=9000, grpc_port=9001, metrics_port=9002)
    assert cmd == [str(tmp_path / "e" / "venv" / "bin" / "mlserver"), "start", str(tmp_path / "m")]
    assert env["MLSERVER_PARALLEL_WORKERS"] == "0", "the chart's default"
    ports = (env["MLSERVER_HTTP_PORT"], env["MLSERVER_GRPC_PORT"], env["MLSERVER_METRICS_PORT"])
    assert ports == ("9000", "9001", "9002")
    monkeypatch.setenv("MLSERVER_PARALLEL_WORKERS", "2")
    _, env = server_command(_settings(tmp_path), "mlserver", tmp_path, port=9000, grpc_port=9001, metrics_port=9002)
    assert env["MLSERVER_PARALLEL_WORKERS"] == "2", "the environment's value wins"


def test_the_mlflow_backend_runs_from_the_venv_with_the_server_package_on_its_path(tmp_path: Path) -> None:
    cmd, env = server_command(_settings(tmp_path), "mlflow", tmp_path, port=9000, grpc_port=9001, metrics_port=9002)
    assert cmd[:4] == [str(tmp_path / "e" / "venv" / "bin" / "python"), "-m", "mlflow_kserve_server", "start"]
    assert cmd[cmd.index("--port") + 1] == "9000" and cmd[cmd.index("--metrics-port") + 1] == "9002"
    assert "--grpc" not in cmd, "gRPC only when asked for"
    assert env["PYTHONPATH"] == str(tmp_path / "e" / "lib")


def test_run_grpc_serves_the_mlflow_backends_grpc_on_the_grpc_port(tmp_path: Path) -> None:
    settings = Settings.from_options(model_uri="/models/iris", models_dir=str(tmp_path / "m"),
                                     env_dir=str(tmp_path / "e"), grpc=True)  # fmt: skip
    cmd, _ = server_command(settings, "mlflow", tmp_path, port=9000, grpc_port=9001, metrics_port=9002)
    assert cmd[cmd.index("--grpc") + 1 :][:2] == ["--grpc-port", "9001"]
