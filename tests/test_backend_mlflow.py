"""The mlflow backend on the product path (`mlflow-kserve run`, report.json, `check`): auto's choice (backend and
reason) for every fixture (the mlflow backend for MLflow >= 2.21, which test_serve.py serves through auto; MLServer
below); older MLflows refused under --backend mlflow naming why; the model logged from a uv project (protobuf 7
pinned, which MLServer refuses) served through auto with its pins unchanged; and --slim.
(The V2 protocol itself: test_v2_*.py.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from support.cli import last_error, mlflow_kserve, report, served, v2_request
from support.models import BuiltModel, build, model_pins
from support.services import free_port

TOO_OLD = {"sklearn-mlflow216": "2.16.2", "sklearn-mlflow213": "2.13.2"}
AUTO = {  # fixture -> the backend auto takes for it on this Python (3.11), and the MLServer it adds
    "sklearn-columns": ("mlflow", None),
    "custom-extra-dep": ("mlflow", None),
    "sklearn-mlflow2": ("mlflow", None),
    "sklearn-mlflow216": ("mlserver", "mlserver==1.6.1"),
    "sklearn-mlflow213": ("mlserver", "mlserver==1.6.1"),
    "loader-raises": ("mlflow", None),
}


def _check(uri: str, env: dict[str, str], tmp_path: Path, *extra: str):
    args = [
        "check",
        "--model-uri",
        uri,
        "--json",
        "--models-dir",
        str(tmp_path / "m"),
        "--env-dir",
        str(tmp_path / "e"),
    ]
    return mlflow_kserve([*args, *extra], env)


@pytest.mark.parametrize(("name", "version"), TOO_OLD.items())
def test_backend_mlflow_refuses_mlflow_before_2_21(
    name: str, version: str, s3_models: dict[str, str], env: dict[str, str], tmp_path: Path
) -> None:
    proc = _check(s3_models[name], env, tmp_path, "--backend", "mlflow")
    assert proc.returncode == 6, proc.stderr
    assert f"--backend mlflow: MLflow {version} has no FastAPI scoring server" in last_error(proc)
    assert "--backend mlserver (or auto)" in last_error(proc)


@pytest.mark.e2e
def test_run_exits_8_when_the_mlflow_backend_cannot_load_the_model(
    models: dict[str, BuiltModel], tmp_path: Path, env: dict[str, str], shared_cache: Path
) -> None:
    port = free_port()
    args = ["--model-uri", str(models["loader-raises"].path), "--name", "loader-raises", "--no-verify",
            "--backend", "mlflow", "--work-dir", str(tmp_path), "--cache-dir", str(shared_cache),
            "--port", str(port), "--metrics-port", str(port + 2)]  # fmt: skip
    proc = mlflow_kserve(["run", *args], env)
    assert proc.returncode == 8, proc.stderr[-3000:]
    assert "MLflow's scoring server exited" in last_error(proc)
    assert "before model 'loader-raises' was ready" in last_error(proc)


@pytest.mark.parametrize("name", AUTO)
def test_auto_choice_for_each_fixture(
    name: str, models: dict[str, BuiltModel], env: dict[str, str], shared_cache: Path, tmp_path: Path
) -> None:
    model = models[name]
    proc = _check(str(model.path), env, tmp_path, "--cache-dir", str(shared_cache))
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    backend, stack = AUTO[name]
    version = model.expected["mlflow"]
    assert plan["backend"]["name"] == backend
    assert plan["backend"]["requested"] == "auto"
    python = plan["python"]["interpreter"]
    if backend == "mlflow":
        assert plan["backend"]["reason"] == (
            f"auto: MLflow {version} has the FastAPI scoring server (>= 2.21), so its own scoring server serves "
            f"MLflow {version} on Python {python}: the mlflow backend, preferred over MLServer"
        )
        assert plan["serving_stack"]["requirements"] == []
    else:
        assert plan["backend"]["reason"] == (
            f"auto: not MLflow's scoring server: MLflow {version} has no FastAPI scoring server (the mlflow backend "
            f"serves MLflow >=2.21,<3.11; >=3.11); MLServer serves MLflow {version} on Python {python} and resolves "
            "with the model's requirements"
        )
        assert stack in plan["serving_stack"]["requirements"]


@pytest.fixture(scope="module")
def uv_model() -> BuiltModel:
    return build("uv-project")


def test_the_uv_project_fixture_is_an_exported_uv_lock(uv_model: BuiltModel) -> None:
    text = (uv_model.path / "requirements.txt").read_text()
    assert 'python_full_version < "3.12"' in text, "uv export keeps the lock's markers"
    pins = model_pins(uv_model.path)
    assert pins["protobuf"].startswith("7.") and pins["mlflow"] == "3.17.2"
    assert len(pins) > 50, "the whole project lock, not the packages MLflow saw imported"


def test_auto_chooses_mlflow_for_the_uv_project_model(
    uv_model: BuiltModel, env: dict[str, str], shared_cache: Path, tmp_path: Path
) -> None:
    proc = _check(str(uv_model.path), env, tmp_path, "--cache-dir", str(shared_cache))
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert plan["backend"]["name"] == "mlflow"
    assert plan["backend"]["reason"].startswith("auto: MLflow 3.17.2 has the FastAPI scoring server")
    assert plan["packages"]["protobuf"] == model_pins(uv_model.path)["protobuf"]
    table = mlflow_kserve(["check", "--model-uri", str(uv_model.path), "--models-dir", str(tmp_path / "m2"),
                           "--env-dir", str(tmp_path / "e2"), "--cache-dir", str(shared_cache)], env)  # fmt: skip
    assert table.returncode == 0, table.stderr
    assert re.search(r"^backend +mlflow  \(auto: MLflow 3.17.2 has ", table.stdout, re.MULTILINE), table.stdout[:800]
    mlserver = _check(str(uv_model.path), env, tmp_path / "explicit", "--backend", "mlserver")
    assert mlserver.returncode == 6
    assert "--backend mlserver: the model's requirements conflict" in last_error(mlserver)
    assert "--backend mlflow serves models of MLflow >= 2.21" in last_error(mlserver)


@pytest.mark.e2e
def test_run_serves_the_uv_project_model_through_auto_with_its_pins(
    uv_model: BuiltModel, env: dict[str, str], shared_cache: Path, tmp_path: Path
) -> None:
    args = ["--model-uri", str(uv_model.path), "--work-dir", str(tmp_path / "work"), "--cache-dir", str(shared_cache)]
    with served(args, env, free_port(), "uv-project", tmp_path / "run.log") as server:
        answer = server.infer(v2_request(uv_model.expected))
        env_dir = next((tmp_path / "work" / "models").glob("*/env"))
        facts = report(env_dir)
    assert [o["data"] for o in answer["outputs"]] == [pytest.approx(uv_model.expected["output"])]
    assert facts["backend"]["name"] == "mlflow" and facts["backend"]["requested"] == "auto"
    pins = model_pins(uv_model.path)
    assert {n: facts["packages"][n] for n in pins} == pins, "report: every pin of the uv lock, unchanged"
    assert set(facts["packages"]) == set(pins), "nothing added"
    lock = (env_dir / "requirements.lock").read_text()
    assert f"protobuf=={pins['protobuf']}" in lock


@pytest.mark.e2e
def test_slim_works_with_the_mlflow_backend(
    models: dict[str, BuiltModel], env: dict[str, str], shared_cache: Path, tmp_path: Path
) -> None:
    model = models["sklearn-columns"]
    args = ["--model-uri", str(model.path), "--backend", "mlflow", "--slim", "--work-dir", str(tmp_path / "work"),
            "--cache-dir", str(shared_cache)]  # fmt: skip
    with served(args, env, free_port(), "iris", tmp_path / "run.log") as server:
        answer = server.infer(v2_request(model.expected))
        facts = report(next((tmp_path / "work" / "models").glob("*/env")))
    assert answer["outputs"][0]["data"] == pytest.approx(model.expected["output"])
    assert facts["slim"] is True and facts["backend"]["name"] == "mlflow"
    assert "mlflow" not in facts["packages"] and facts["packages"]["mlflow-skinny"] == model.expected["mlflow"]
