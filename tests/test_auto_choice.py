"""`check --json` under `auto` on the models the issue names: a pandas-3 model that answers a string column and the
holdout-style wine model (scikit-learn) get the mlflow backend; a model logged with MLflow 2.20, whose scoring
server is still Flask, gets MLServer 1.7.1."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from support.cli import mlflow_kserve
from support.models import build
from support.v2models import save_all, save_wine

pytestmark = pytest.mark.e2e  # builds a builder venv (MLflow 2.20) and locks against the index


def _model(name: str) -> Path:
    if name == "pandas3-strings":
        return save_all()["mixed"].path
    if name == "wine":
        return save_wine()
    return build("sklearn-mlflow220").path


@pytest.mark.parametrize(("name", "backend"), [("pandas3-strings", "mlflow"), ("wine", "mlflow"),
                                               ("mlflow-2.20", "mlserver")])  # fmt: skip
def test_check_json_names_the_backend_auto_takes(name: str, backend: str, shared_cache: Path, tmp_path: Path) -> None:
    args = ["check", "--model-uri", str(_model(name)), "--json", "--models-dir", str(tmp_path / "m"), "--env-dir",
            str(tmp_path / "e"), "--cache-dir", str(shared_cache)]  # fmt: skip
    proc = mlflow_kserve(args, os.environ)
    assert proc.returncode == 0, proc.stderr[-3000:]
    plan = json.loads(proc.stdout)
    assert (plan["backend"]["name"], plan["backend"]["requested"]) == (backend, "auto"), plan["backend"]
    if name == "pandas3-strings":
        assert plan["packages"]["pandas"].startswith("3."), "a pandas-3 model"
    if name == "wine":
        assert "scikit-learn" in plan["packages"]
    if backend == "mlflow":
        assert plan["serving_stack"]["requirements"] == ["orjson"], "no required package; the optional orjson"
        assert plan["serving_stack"]["optional"]["added"] == ["orjson"], "it resolves with the model's pins"
        assert "FastAPI scoring server" in plan["backend"]["reason"]
    else:
        assert plan["mlflow_version"] == "2.20.3"
        assert "mlserver==1.7.1" in plan["serving_stack"]["requirements"]
        assert "no FastAPI scoring server" in plan["backend"]["reason"]
