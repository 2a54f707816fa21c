"""`mlflow-kserve run` serves every real model, fetched from S3 and from the registry, and a V2 request
returns exactly what the model's own `pyfunc.load_model(...).predict` returned where it was logged."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.cli import report, served, v2_request
from support.models import BuiltModel
from support.services import free_port

SERVED_MODELS = {
    "sklearn-columns": ("mlserver==1.7.1", "3.17.2"),
    "custom-extra-dep": ("mlserver==1.7.1", "3.17.2"),
    "sklearn-mlflow2": ("mlserver==1.7.1", "2.22.4"),
    "sklearn-mlflow216": ("mlserver==1.6.1", "2.16.2"),
    "sklearn-mlflow213": ("mlserver==1.6.1", "2.13.2"),
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
    stack, mlflow_version = SERVED_MODELS[name]
    assert stack in facts["serving_stack"]
    assert facts["mlflow_version"] == mlflow_version == model.expected["mlflow"]
    assert facts["packages"]["mlflow"] == mlflow_version
    if name == "custom-extra-dep":
        assert "roman" in facts["packages"], "the model's own dependency is installed"
    assert server.proc.returncode == 130, "Ctrl-C (SIGINT) stops run, with the exit-code table's 130"
    assert "[serve] stopped by SIGINT" in server.output()
