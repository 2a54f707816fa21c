"""`mlflow-kserve run` serves every real model through auto, fetched from S3 and from the registry, and a V2 request
returns exactly what the model's own `pyfunc.load_model(...).predict` returned where it was logged: models of MLflow
>= 2.21 by the mlflow backend (the model's own packages, every pin unchanged, nothing added), older ones by MLServer
1.6.1."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.cli import report, served, v2_request
from support.models import BuiltModel, model_pins
from support.services import free_port

SERVED_MODELS = {  # model -> (backend auto takes, the MLServer it adds, MLflow)
    "sklearn-columns": ("mlflow", None, "3.17.2"),
    "custom-extra-dep": ("mlflow", None, "3.17.2"),
    "sklearn-mlflow2": ("mlflow", None, "2.22.4"),
    "sklearn-mlflow216": ("mlserver", "mlserver==1.6.1", "2.16.2"),
    "sklearn-mlflow213": ("mlserver", "mlserver==1.6.1", "2.13.2"),
}


@pytest.mark.e2e
@pytest.mark.parametrize("source", ["s3", "registry"])
@pytest.mark.parametrize("name", list(SERVED_MODELS))
def test_run_serves_the_model_like_local_predict(
    name: str,
    source: str,
    models: dict[str, BuiltModel],
    s3_models: dict[str, str],
    registry_models: dict[str, str],
    cli_env: dict[str, str],
    shared_cache: Path,
    tmp_path: Path,
) -> None:
    uri = (s3_models if source == "s3" else registry_models)[name]
    model = models[name]
    port = free_port()
    args = ["--model-uri", uri, "--work-dir", str(tmp_path / "work"), "--cache-dir", str(shared_cache)]
    with served(args, cli_env, port, name, tmp_path / "run.log") as server:
        answer = server.infer(v2_request(model.expected))
        env_dir = next((tmp_path / "work" / "models").glob("*/env"))
        facts = report(env_dir)
    outputs = answer["outputs"]
    assert len(outputs) == 1
    assert outputs[0]["data"] == pytest.approx(model.expected["output"])
    backend, stack, mlflow_version = SERVED_MODELS[name]
    assert facts["backend"]["name"] == backend and facts["backend"]["requested"] == "auto"
    if backend == "mlflow":
        assert facts["serving_stack"] == [] and not {"mlserver", "mlserver-mlflow"} & set(facts["packages"])
        pins = model_pins(model.path)
        assert {n: facts["packages"][n] for n in pins} == pins, "every pin of the model, unchanged"
        if mlflow_version < "3.11":  # its scoring server uses app.route, gone in Starlette 1.0
            assert facts["packages"]["starlette"].startswith("0.")
        assert "starting MLflow's scoring server" in server.output()
    else:
        assert stack in facts["serving_stack"]
    assert facts["mlflow_version"] == mlflow_version == model.expected["mlflow"]
    assert facts["packages"]["mlflow"] == mlflow_version
    if name == "custom-extra-dep":
        assert "roman" in facts["packages"], "the model's own dependency is installed"
    assert server.proc.returncode == 0, "Ctrl-C (SIGINT) stops run cleanly"
    assert "[serve] stopped" in server.output()
