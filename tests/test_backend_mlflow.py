"""The mlflow backend on the product path (`mlflow-kserve run`, report.json, `check`): every fixture model whose
MLflow has the FastAPI scoring server is served under --backend mlflow with V2 answers equal to its local predict
and a lock of the model's own packages only; older ones are refused naming why; auto's choice (backend and
reason) for every fixture; and the model logged from a uv project (protobuf 7 pinned, which MLServer refuses)
served through auto with its pins unchanged. (The V2 protocol itself, side by side with MLServer: test_v2_*.py.)"""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from support.cli import assert_one_line_per_event, last_error, mlflow_kserve, report, served, v2_request
from support.models import BuiltModel, build
from support.services import free_port

MLFLOW_SERVES = ["sklearn-columns", "custom-extra-dep", "sklearn-mlflow2"]  # MLflow >= 2.21
TOO_OLD = {"sklearn-mlflow216": "2.16.2", "sklearn-mlflow213": "2.13.2"}
AUTO = {  # fixture -> the MLServer that auto takes for it on this Python (3.11)
    "sklearn-columns": "mlserver==1.7.1",
    "custom-extra-dep": "mlserver==1.7.1",
    "sklearn-mlflow2": "mlserver==1.7.1",
    "sklearn-mlflow216": "mlserver==1.6.1",
    "sklearn-mlflow213": "mlserver==1.6.1",
    "loader-raises": "mlserver==1.7.1",
}


def model_pins(model_dir: Path) -> dict[str, str]:
    """The exact pins of the model's requirements.txt that apply on this interpreter (canonical names)."""
    pins = {}
    for line in (model_dir / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        requirement = Requirement(line)
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        specs = list(requirement.specifier)
        if len(specs) == 1 and specs[0].operator == "==":
            pins[canonicalize_name(requirement.name)] = specs[0].version
    return pins


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


@pytest.mark.e2e
@pytest.mark.parametrize("name", MLFLOW_SERVES)
def test_run_serves_every_fixture_under_backend_mlflow(
    name: str,
    models: dict[str, BuiltModel],
    s3_models: dict[str, str],
    env: dict[str, str],
    shared_cache: Path,
    tmp_path: Path,
) -> None:
    model = models[name]
    args = ["--model-uri", s3_models[name], "--backend", "mlflow", "--work-dir", str(tmp_path / "work"),
            "--cache-dir", str(shared_cache)]  # fmt: skip
    with served(args, env, free_port(), name, tmp_path / "run.log", stop_signal=signal.SIGTERM) as server:
        answer = server.infer(v2_request(model.expected))
        facts = report(next((tmp_path / "work" / "models").glob("*/env")))
    assert [o["data"] for o in answer["outputs"]] == [pytest.approx(model.expected["output"])]
    assert facts["backend"] == {"name": "mlflow", "requested": "mlflow", "reason": "--backend mlflow (requested)"}
    assert facts["serving_stack"] == []
    assert not {"mlserver", "mlserver-mlflow", "uvloop"} & set(facts["packages"]), "the mlflow backend adds nothing"
    if model.expected["mlflow"] < "3.11":  # its scoring server uses app.route, gone in Starlette 1.0
        assert facts["packages"]["starlette"].startswith("0.")
    pins = model_pins(model.path)
    assert {n: facts["packages"][n] for n in pins} == pins, "every pin of the model, unchanged"
    assert server.proc.returncode == 143 and "[serve] stopped by SIGTERM" in server.output()
    assert_one_line_per_event(server, "SIGTERM")
    assert "starting MLflow's scoring server" in server.output()


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
            "--port", str(port), "--metrics-port", str(free_port())]  # fmt: skip
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
    assert plan["backend"]["name"] == "mlserver"
    assert plan["backend"]["requested"] == "auto"
    python = plan["python"]["interpreter"]
    assert plan["backend"]["reason"] == (
        f"auto: MLServer serves MLflow {model.expected['mlflow']} on Python {python} and resolves with the "
        "model's requirements"
    )
    assert AUTO[name] in plan["serving_stack"]["requirements"]


@pytest.fixture(scope="module")
def uv_model() -> BuiltModel:
    return build("uv-project")


@pytest.mark.network
def test_the_uv_project_fixture_is_an_exported_uv_lock(uv_model: BuiltModel) -> None:
    text = (uv_model.path / "requirements.txt").read_text()
    assert 'python_full_version < "3.12"' in text, "uv export keeps the lock's markers"
    pins = model_pins(uv_model.path)
    assert pins["protobuf"].startswith("7.") and pins["mlflow"] == "3.17.2"
    assert len(pins) > 50, "the whole project lock, not the packages MLflow saw imported"


@pytest.mark.network
def test_auto_chooses_mlflow_for_the_uv_project_model(
    uv_model: BuiltModel, env: dict[str, str], shared_cache: Path, tmp_path: Path
) -> None:
    proc = _check(str(uv_model.path), env, tmp_path, "--cache-dir", str(shared_cache))
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert plan["backend"]["name"] == "mlflow"
    reason = plan["backend"]["reason"]
    assert reason.startswith("auto: not MLServer: the model's requirements conflict with MLServer's (mlserver==1.7.1")
    assert "protobuf" in reason and reason.endswith("adds no package")
    assert plan["packages"]["protobuf"] == model_pins(uv_model.path)["protobuf"]
    table = mlflow_kserve(["check", "--model-uri", str(uv_model.path), "--models-dir", str(tmp_path / "m2"),
                           "--env-dir", str(tmp_path / "e2"), "--cache-dir", str(shared_cache)], env)  # fmt: skip
    assert table.returncode == 0, table.stderr
    assert re.search(r"^backend +mlflow  \(auto: not MLServer: ", table.stdout, re.MULTILINE), table.stdout[:800]
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
