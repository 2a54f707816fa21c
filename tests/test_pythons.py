"""Python 3.10–3.13: venvs built with the machine's other interpreters (--python; found under pyenv or on PATH,
skipped naming the interpreter where absent), served by `mlflow-kserve run`: auto takes the mlflow backend on 3.10
and on 3.13 (a model logged on 3.13; MLServer supports Python < 3.13), and MLServer, asked for, serves on 3.12
(its row's upper end; 3.11 is every other test's Python)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.cli import last_error, mlflow_kserve, report, served, v2_request
from support.models import BuiltModel, build, require_python
from support.services import free_port

# (Python minor, model, --backend, the backend that serves)
SERVED = [("3.10", "sklearn-py310", "auto", "mlflow"), ("3.12", "sklearn-columns", "mlserver", "mlserver"),
          ("3.13", "sklearn-py313", "auto", "mlflow")]  # fmt: skip


def _model(name: str, models: dict[str, BuiltModel]) -> BuiltModel:
    return models[name] if name in models else build(name)


def _check_313_model(python: str, env: dict[str, str], tmp_path: Path, *extra: str):
    """`check` of the model logged on 3.13, with the venv interpreter ``python``."""
    model = build("sklearn-py313")
    return mlflow_kserve(["check", "--model-uri", str(model.path), "--python", python, *extra,
                         "--models-dir", str(tmp_path / "m"), "--env-dir", str(tmp_path / "e")], env)  # fmt: skip


@pytest.mark.e2e
@pytest.mark.parametrize(("minor", "name", "requested", "backend"), SERVED, ids=[f"py{s[0]}" for s in SERVED])
def test_run_serves_on_each_python(
    minor: str,
    name: str,
    requested: str,
    backend: str,
    models: dict[str, BuiltModel],
    env: dict[str, str],
    shared_cache: Path,
    tmp_path: Path,
) -> None:
    python = require_python(minor)
    model = _model(name, models)
    args = ["--model-uri", str(model.path), "--python", python, "--work-dir", str(tmp_path / "work"),
            "--cache-dir", str(shared_cache), "--backend", requested]  # fmt: skip
    with served(args, env, free_port(), name, tmp_path / "run.log") as server:
        answer = server.infer(v2_request(model.expected))
        facts = report(next((tmp_path / "work" / "models").glob("*/env")))
    assert answer["outputs"][0]["data"] == pytest.approx(model.expected["output"])
    assert facts["python"]["interpreter"].startswith(f"{minor}.")
    assert facts["backend"]["name"] == backend
    if backend == "mlflow":
        assert facts["backend"]["reason"].startswith(f"auto: MLflow {model.expected['mlflow']} has the FastAPI")
        assert facts["serving_stack"] == [] and "mlserver" not in facts["packages"]
    else:
        assert facts["packages"]["mlserver"] == "1.7.1"


def test_the_313_model_was_logged_on_313() -> None:
    require_python("3.13")
    model = build("sklearn-py313")
    assert (model.path / "python_env.yaml").read_text().startswith("python: 3.13.")


def test_backend_mlserver_on_313_exits_6_naming_the_mlflow_backend(env: dict[str, str], tmp_path: Path) -> None:
    proc = _check_313_model(require_python("3.13"), env, tmp_path, "--backend", "mlserver")
    assert proc.returncode == 6, proc.stderr
    message = last_error(proc)
    assert "--backend mlserver: MLServer supports Python >=3.9,<3.13, the serving interpreter is 3.13." in message
    assert "--backend mlflow serves models of MLflow >= 2.21" in message


def test_the_313_model_on_311_exits_6_giving_both_reasons(env: dict[str, str], tmp_path: Path) -> None:
    """Its numpy pin needs Python >= 3.12: neither backend resolves on 3.11, and the message says why for each."""
    proc = _check_313_model(require_python("3.11"), env, tmp_path, "--json")
    assert proc.returncode == 6, proc.stderr
    message = last_error(proc)
    assert "no serving backend fits this model: MLServer: the model's requirements conflict with MLServer's" in message
    assert "MLflow's scoring server: the model's own requirements cannot be resolved (uv): " in message
    assert "numpy" in message and not proc.stdout.strip(), "no plan printed"


def test_check_on_313_plans_the_mlflow_backend(env: dict[str, str], tmp_path: Path) -> None:
    proc = _check_313_model(require_python("3.13"), env, tmp_path, "--json")
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert plan["backend"]["name"] == "mlflow" and plan["serving_stack"]["requirements"] == []
    assert plan["packages"]["numpy"] == "2.5.5"
