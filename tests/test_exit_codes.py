"""One test per documented exit code, each triggered by its real cause through the CLI, checking the code and
the one-line message (cause + fix, no secrets)."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import variants
from support.cli import last_error, mlflow_kserve
from support.models import BuiltModel
from support.services import FAKE_CREDENTIALS, S3, free_port


def _init(uri: str, tmp_path: Path, env: dict[str, str], *extra: str):
    args = ["init", "--model-uri", uri, "--models-dir", str(tmp_path / "models"), "--env-dir", str(tmp_path / "env")]
    return mlflow_kserve([*args, *extra], env)


def _assert_nothing_ready(tmp_path: Path) -> None:
    assert not (tmp_path / "env" / "report.json").exists()
    assert not (tmp_path / "env" / "venv").exists()
    assert not (tmp_path / "models" / "model-settings.json").exists()


def _no_secret(text: str) -> None:
    for secret in FAKE_CREDENTIALS.values():
        assert secret not in text


def test_2_bad_configuration(models: dict[str, BuiltModel], tmp_path: Path, cli_env: dict[str, str]) -> None:
    proc = _init(str(models["sklearn-columns"].path), tmp_path, cli_env, "--slim", "--installer", "pip")
    assert proc.returncode == 2
    assert "--slim needs the uv installer" in last_error(proc)


def test_3_missing_object_is_not_retried(s3: S3, tmp_path: Path, cli_env: dict[str, str]) -> None:
    proc = _init(f"s3://{s3.bucket}/no/such/model", tmp_path, cli_env, "--fetch-retries", "4")
    assert proc.returncode == 3, proc.stderr
    message = last_error(proc)
    assert "model not found at s3://models/no/such/model" in message and "fix:" in message
    assert "retrying" not in proc.stderr, "a missing object is not retried"
    _no_secret(proc.stderr)
    _assert_nothing_ready(tmp_path)


def test_3_missing_registry_alias(registry_models: dict[str, str], tmp_path: Path, cli_env: dict[str, str]) -> None:
    proc = _init("models:/sklearn-columns@no-such-alias", tmp_path, cli_env)
    assert proc.returncode == 3, proc.stderr
    assert "models:/sklearn-columns@no-such-alias" in last_error(proc)


def test_3_unreachable_store_is_retried_then_fails(tmp_path: Path, cli_env: dict[str, str]) -> None:
    env = {**cli_env, "MLFLOW_S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}", "AWS_MAX_ATTEMPTS": "1"}
    proc = _init("s3://models/plain/sklearn-columns/", tmp_path, env, "--fetch-retries", "2")
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.count("retrying") == 2
    assert "after 3 attempts" in last_error(proc)


def test_4_no_mlmodel(models: dict[str, BuiltModel], s3: S3, tmp_path: Path, cli_env: dict[str, str]) -> None:
    broken = variants.without_mlmodel(models["sklearn-columns"].path, tmp_path / "broken")
    uri = s3.upload_dir(broken, "broken/no-mlmodel")
    proc = _init(uri, tmp_path, cli_env)
    assert proc.returncode == 4, proc.stderr
    assert "no MLmodel file" in last_error(proc)
    _assert_nothing_ready(tmp_path)


def test_4_no_python_function_flavor(models: dict[str, BuiltModel], tmp_path: Path, cli_env: dict[str, str]) -> None:
    broken = variants.without_pyfunc(models["sklearn-columns"].path, tmp_path / "broken")
    proc = _init(str(broken), tmp_path, cli_env)
    assert proc.returncode == 4
    assert "no python_function flavor" in last_error(proc)


def test_5_index_option_in_the_model(models: dict[str, BuiltModel], tmp_path: Path, cli_env: dict[str, str]) -> None:
    line = "--extra-index-url https://user:hunter2@pypi.evil.example/simple"
    broken = variants.with_requirement_lines(models["sklearn-columns"].path, tmp_path / "broken", line)
    proc = _init(str(broken), tmp_path, cli_env)
    assert proc.returncode == 5
    message = last_error(proc)
    assert "requirements.txt:" in message and "sets a package index" in message
    assert "--allow index-options" in message
    assert "hunter2" not in proc.stderr
    _assert_nothing_ready(tmp_path)


def test_5_python_mismatch_under_strict(models: dict[str, BuiltModel], tmp_path: Path, cli_env: dict[str, str]) -> None:
    broken = variants.with_python(models["sklearn-columns"].path, tmp_path / "broken", "3.9.18")
    proc = mlflow_kserve(["check", "--model-uri", str(broken), "--python-policy", "strict",
                          "--models-dir", str(tmp_path / "m"), "--env-dir", str(tmp_path / "e")], cli_env)  # fmt: skip
    assert proc.returncode == 5
    assert "logged with Python 3.9.18" in last_error(proc)


def test_6_pins_conflict_with_mlserver_under_backend_mlserver(
    models: dict[str, BuiltModel], tmp_path: Path, env: dict[str, str]
) -> None:
    broken = variants.with_requirement_lines(models["sklearn-columns"].path, tmp_path / "broken", "protobuf<4")
    proc = _init(str(broken), tmp_path, env, "--backend", "mlserver")
    assert proc.returncode == 6, proc.stderr
    message = last_error(proc)
    assert "--backend mlserver: the model's requirements conflict with MLServer's" in message
    assert "protobuf" in message and "--backend mlflow serves models of MLflow >= 2.21" in message
    _assert_nothing_ready(tmp_path)


def test_6_auto_gives_both_reasons_when_no_backend_resolves(
    models: dict[str, BuiltModel], tmp_path: Path, env: dict[str, str]
) -> None:
    line = "opentelemetry-proto<1.9"  # MLflow 3.17 itself needs >= 1.9: no backend can serve this
    broken = variants.with_requirement_lines(models["sklearn-columns"].path, tmp_path / "broken", line)
    proc = _init(str(broken), tmp_path, env)
    assert proc.returncode == 6, proc.stderr
    message = last_error(proc)
    assert (
        "no serving backend fits this model: MLflow's scoring server: the model's own requirements cannot be "
        "resolved (uv): " in message
    )
    assert "; MLServer: the model's requirements conflict with MLServer's" in message
    assert "opentelemetry-proto" in message
    _assert_nothing_ready(tmp_path)


def test_7_unreachable_index(models: dict[str, BuiltModel], tmp_path: Path, cli_env: dict[str, str]) -> None:
    index = f"http://mirror-user:mirror-pass@127.0.0.1:{free_port()}/simple"
    proc = _init(str(models["sklearn-columns"].path), tmp_path, cli_env, "--index-url", index)
    assert proc.returncode == 7, proc.stderr
    assert "unreachable" in last_error(proc)
    assert "mirror-pass" not in proc.stderr
    _assert_nothing_ready(tmp_path)


@pytest.mark.e2e
def test_8_model_whose_loader_raises(models: dict[str, BuiltModel], tmp_path: Path, cli_env: dict[str, str]) -> None:
    proc = _init(str(models["loader-raises"].path), tmp_path, cli_env)
    assert proc.returncode == 8, proc.stderr
    message = last_error(proc)
    assert "failed to load" in message and "checksum mismatch in weights.bin" in message
    _assert_nothing_ready(tmp_path)


@pytest.mark.e2e
def test_8_run_exits_non_zero_when_mlserver_cannot_load(
    models: dict[str, BuiltModel], tmp_path: Path, cli_env: dict[str, str], shared_cache: Path
) -> None:
    # --no-verify lets the broken model reach MLServer, which exits 0 after failing to load it.
    port = free_port()
    args = ["--model-uri", str(models["loader-raises"].path), "--name", "loader-raises", "--no-verify",
            "--backend", "mlserver"]  # fmt: skip
    args += ["--work-dir", str(tmp_path), "--cache-dir", str(shared_cache), "--port", str(port)]
    args += ["--grpc-port", str(port + 1), "--metrics-port", str(port + 2)]
    proc = mlflow_kserve(["run", *args], cli_env)
    assert proc.returncode == 8, proc.stderr[-3000:]
    assert "before model 'loader-raises' was ready" in last_error(proc)
