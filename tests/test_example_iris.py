"""The README's main job on the bundled example: train examples/iris, `mlflow-kserve run` it, send
examples/iris/request.json. Also the other V2 shapes MLServer's MLflow runtime accepts for a column model."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
from support.cli import served
from support.services import free_port

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "iris"


@pytest.mark.e2e
@pytest.mark.timeout(900)
def test_bundled_iris_example_serves_the_readme_request(cli_env: dict[str, str], shared_cache: Path, tmp_path: Path):
    model = tmp_path / "iris-model"
    subprocess.run([sys.executable, EXAMPLE / "train.py", model], check=True, timeout=300, capture_output=True)
    assert (model / "MLmodel").is_file() and (model / "requirements.txt").is_file()
    request = json.loads((EXAMPLE / "request.json").read_text())
    as_columns = copy.deepcopy(request)  # shape [2, 1]: what the model's metadata advertises ([-1, 1])
    for item in as_columns["inputs"]:
        item["shape"] = [len(item["data"]), 1]
    as_frame = {**copy.deepcopy(request), "parameters": {"content_type": "pd"}}

    args = ["--model-uri", str(model), "--work-dir", str(tmp_path / "work"), "--cache-dir", str(shared_cache)]
    with served(args, cli_env, free_port(), "iris-model", tmp_path / "run.log") as server:
        for payload in (request, as_columns, as_frame):
            answer = server.infer(payload)
            assert [o["data"] for o in answer["outputs"]] == [[0, 2]], payload  # setosa, virginica
