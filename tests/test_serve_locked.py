"""A model that carries its own lock is served exactly as locked: pyfunc models logged by MLflow 3.17 from a real
uv project (uv.lock, pyproject.toml and .python-version among their files), and one carrying the project's PEP 751
export (pylock.toml). The served venv's packages equal what ``uv export --frozen`` (uv.lock) or uv's own reading
of the pylock.toml (``uv pip install --dry-run -r pylock.toml``) say for this interpreter, on both backends (the
mlserver one adds its packages around the lock, moving none); the V2 answer equals the model's local predict. A
backend addition that conflicts with the lock (MLServer's protobuf<7 against a locked protobuf 7) is exit 6 naming
both sides under ``--backend mlserver``; ``auto`` falls back to the backend that adds nothing.
(Reading locks, the policy on them and the exit codes 4 and 5: test_modellock.py.)"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from mlflow_kserve.interpreter import probe
from mlflow_kserve.tools import uv_binary
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from support.cli import last_error, mlflow_kserve, report, served, v2_request
from support.models import BuiltModel, build_uv_locked
from support.services import free_port


@pytest.fixture(scope="module")
def locked() -> dict[str, BuiltModel]:
    return build_uv_locked()


def installed(venv: Path) -> dict[str, str]:
    """The venv's distributions, as uv lists them."""
    cmd = [uv_binary(), "pip", "list", "--python", venv / "bin" / "python", "--format", "json"]
    listed = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120).stdout)
    return {canonicalize_name(item["name"]): item["version"] for item in listed}


def exported(model: Path, venv: Path, tmp_path: Path) -> dict[str, str]:
    """What ``uv export --frozen`` says the model's uv.lock installs on the venv's interpreter."""
    project = tmp_path / "project"
    project.mkdir()
    for name in ("uv.lock", "pyproject.toml"):
        shutil.copyfile(model / name, project / name)
    cmd = [uv_binary(), "export", "--frozen", "--no-dev", "--no-emit-project", "--no-hashes", "--no-header",
           "--no-annotate"]  # fmt: skip
    lines = subprocess.run(cmd, cwd=project, capture_output=True, text=True, check=True, timeout=120).stdout
    environment = probe(str(venv / "bin" / "python")).marker_environment
    pins = [Requirement(line) for line in lines.splitlines() if line.strip()]
    return {
        canonicalize_name(r.name): str(r.specifier).removeprefix("==")
        for r in pins
        if r.marker is None or r.marker.evaluate(environment)
    }


def dry_run(pylock: Path, venv: Path, tmp_path: Path) -> dict[str, str]:
    """What uv's own reading of ``pylock`` installs into an empty venv of the same interpreter."""
    empty = tmp_path / "empty"
    subprocess.run([uv_binary(), "venv", "-q", "--python", (venv / "bin" / "python").resolve(), empty], check=True)
    cmd = [uv_binary(), "pip", "install", "--dry-run", "--python", empty / "bin" / "python", "-r", pylock]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=300)
    out = done.stdout + done.stderr
    pins = [line.strip()[2:] for line in out.splitlines() if line.strip().startswith("+ ")]
    return {canonicalize_name(pin.split("==")[0]): pin.split("==")[1] for pin in pins}


def _serve(model: BuiltModel, backend: str, cache: Path, tmp_path: Path, env: dict[str, str]) -> tuple[list, dict]:
    args = ["--model-uri", str(model.path), "--backend", backend, "--work-dir", str(tmp_path / "work"),
            "--cache-dir", str(cache)]  # fmt: skip
    with served(args, env, free_port(), "iris", tmp_path / "run.log") as server:
        answer = server.infer(v2_request(model.expected))
        facts = report(next((tmp_path / "work" / "models").glob("*/env")))
    return answer["outputs"][0]["data"], facts


@pytest.mark.e2e
@pytest.mark.parametrize("backend", ["mlflow", "mlserver"])
def test_the_served_venv_is_the_models_uv_lock(
    backend: str, locked: dict[str, BuiltModel], shared_cache: Path, tmp_path: Path, env: dict[str, str]
) -> None:
    model = locked["uv-lock"]
    assert (model.path / "uv.lock").is_file(), "MLflow 3.17 copies the uv project's lock into a pyfunc model"
    output, facts = _serve(model, backend, shared_cache, tmp_path, env)
    assert output == pytest.approx(model.expected["output"])
    assert facts["backend"]["name"] == backend
    assert facts["resolution"]["mode"] == "lock" and facts["resolution"]["lock_source"] == "uv.lock"
    venv = Path(facts["venv"])
    lock, venv_packages = exported(model.path, venv, tmp_path), installed(venv)
    assert lock["protobuf"].startswith("6.") and lock["mlflow"] == "3.17.2"
    if backend == "mlflow":
        assert venv_packages == lock, "the backend that adds nothing: the venv is the lock"
    else:
        assert {name: venv_packages.get(name) for name in lock} == lock, "no locked package moved"
        added = set(venv_packages) - set(lock)
        assert {"mlserver", "mlserver-mlflow"} <= added
        assert set(facts["resolution"]["exempt"]) - set(lock) <= added, "what the lock lacks was added"


@pytest.mark.e2e
def test_the_served_venv_is_the_models_pylock(
    locked: dict[str, BuiltModel], shared_cache: Path, tmp_path: Path, env: dict[str, str]
) -> None:
    model = locked["pylock"]
    assert not (model.path / "uv.lock").exists()
    output, facts = _serve(model, "mlflow", shared_cache, tmp_path, env)
    assert output == pytest.approx(model.expected["output"])
    assert facts["resolution"]["mode"] == "lock" and facts["resolution"]["lock_source"] == "pylock.toml"
    venv = Path(facts["venv"])
    assert installed(venv) == dry_run(model.path / "pylock.toml", venv, tmp_path)


@pytest.mark.e2e
def test_a_backend_addition_that_conflicts_with_the_lock(
    locked: dict[str, BuiltModel], tmp_path: Path, env: dict[str, str]
) -> None:
    model = locked["uv-lock-protobuf7"]

    def check(name: str, *extra: str) -> subprocess.CompletedProcess[str]:
        dirs = ["--models-dir", str(tmp_path / name / "m"), "--env-dir", str(tmp_path / name / "e")]
        return mlflow_kserve(["check", "--model-uri", str(model.path), "--json", *dirs, *extra], env)

    refused = check("mlserver", "--backend", "mlserver")
    assert refused.returncode == 6, refused.stderr
    message = last_error(refused)
    assert "the model's uv.lock pins" in message and "protobuf==7.36.2" in message, message
    assert "mlserver==1.7.1" in message and "--backend mlflow" in message
    auto = check("auto")
    assert auto.returncode == 0, auto.stderr
    plan = json.loads(auto.stdout)
    # auto prefers the mlflow backend (MLflow >= 2.21), which adds nothing to the lock: MLServer is not even tried
    assert plan["backend"]["name"] == "mlflow" and plan["backend"]["reason"].startswith("auto: MLflow 3.17.2 has the")
    assert plan["serving_stack"]["requirements"] == [] and plan["resolution"]["exempt"] == {}
    assert plan["packages"]["protobuf"] == "7.36.2" and plan["resolution"]["mode"] == "lock"
