"""The mlflow backend serves every fixture model from the venv `mlflow-kserve init --backend mlserver` builds for
it, beside MLServer started from the same venv: the same V2 requests (raw JSON and tritonclient) get the local
``predict`` result and MLServer's values, with the output named and shaped as the model metadata declares it
(``output-0``: mlserver-mlflow answers ``output-1`` while its metadata says ``output-0``; our MLServer runtime,
mlflow_kserve_mlserver, which init gives MLServer, answers as the metadata says too). Models whose
MLflow predates the FastAPI scoring server (2.21) and a model whose loader raises make the server exit non-zero
with the reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import tritonclient.http as triton
from support.cli import v2_request
from support.models import BuiltModel
from support.services import free_port
from support.v2servers import (
    ModelEnv,
    Server,
    init_env,
    mlflow_backend,
    mlflow_backend_command,
    mlflow_backend_env,
    mlserver,
    run_to_exit,
)

SERVED = ["sklearn-columns", "custom-extra-dep", "sklearn-mlflow2"]
TOO_OLD = ["sklearn-mlflow216", "sklearn-mlflow213"]  # MLflow 2.16, 2.13: Flask scoring server


@pytest.fixture(scope="session")
def env_cache(shared_cache: Path) -> Path:
    """init's dependency cache for these tests: the session's, so a venv another test built is restored."""
    return shared_cache


def _env(models: dict[str, BuiltModel], name: str, tmp_path: Path, cache: Path, *extra: str) -> ModelEnv:
    """The model's venv as init builds it for MLServer (asked for): it has MLflow, so both servers run from it."""
    return init_env(models[name].path, name, tmp_path / "work", cache, "--backend", "mlserver", *extra)


def requests_for(expected: dict[str, Any]) -> list[dict[str, Any]]:
    """The tests' V2 request, and for column models KServe's own MLflow e2e shape: content type pd, one input
    per column (here FP32, one row at a time as KServe sends it)."""
    payloads = [v2_request(expected)]
    if expected["kind"] == "columns":
        payloads.append(
            {
                "parameters": {"content_type": "pd"},
                "inputs": [
                    {"name": column, "shape": [1], "datatype": "FP32", "data": [values[-1]]}
                    for column, values in expected["input"].items()
                ],
            }
        )
    return payloads


def same_values(mine: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> None:
    """Our outputs carry MLServer's values and datatypes; the names and shapes are the metadata's."""
    assert [(o["datatype"], o["data"]) for o in mine] == [(o["datatype"], o["data"]) for o in theirs]
    assert [o["name"] for o in mine] == [o["name"].replace("output-1", "output-0") for o in theirs]


def agrees_with_metadata(server: Server, name: str, outputs: list[dict[str, Any]]) -> None:
    declared = requests.get(f"{server.url}/v2/models/{name}", timeout=30).json()["outputs"]
    assert [(t["name"], t["datatype"], len(t["shape"])) for t in declared] == [
        (o["name"], o["datatype"], len(o["shape"])) for o in outputs
    ], "infer returns what the metadata lists (names, datatypes, ranks)"
    for tensor, output in zip(declared, outputs, strict=True):
        assert all(d in (-1, n) for d, n in zip(tensor["shape"], output["shape"], strict=True))


def triton_infer(server: Server, name: str, expected: dict[str, Any]) -> tuple[dict[str, Any], np.ndarray]:
    """tritonclient's defaults but JSON inputs (MLServer 1.7.1 takes no binary ones): it asks for binary outputs,
    which this server sends and MLServer answers as JSON; as_numpy reads either."""
    client = triton.InferenceServerClient(url=server.url.removeprefix("http://"), network_timeout=120)
    if expected["kind"] == "columns":
        arrays = {column: np.asarray(values, dtype=np.float64) for column, values in expected["input"].items()}
    else:
        arrays = {"input-0": np.asarray(expected["input"], dtype=np.float64)}
    inputs = []
    for column, array in arrays.items():
        tensor = triton.InferInput(column, list(array.shape), "FP64")
        tensor.set_data_from_numpy(array, binary_data=False)
        inputs.append(tensor)
    result = client.infer(name, inputs)
    response = result.get_response()
    return response, result.as_numpy(response["outputs"][0]["name"])


@pytest.mark.e2e
@pytest.mark.parametrize("name", SERVED)
def test_answers_like_local_predict_and_like_mlserver(
    name: str, models: dict[str, BuiltModel], env_cache: Path, tmp_path: Path
) -> None:
    model = models[name]
    env = _env(models, name, tmp_path, env_cache)
    with mlserver(env, tmp_path / "mlserver.log") as theirs, mlflow_backend(env, tmp_path / "ours.log") as ours:
        for payload in requests_for(model.expected):
            mine, reference = ours.infer(name, payload), theirs.infer(name, payload)
            assert mine.status_code == reference.status_code == 200, (mine.text, reference.text)
            same_values(mine.json()["outputs"], reference.json()["outputs"])
            agrees_with_metadata(ours, name, mine.json()["outputs"])
            assert mine.json()["model_name"] == reference.json()["model_name"] == name
            rows = len(payload["inputs"][0]["data"]) if model.expected["kind"] == "columns" else None
            want = model.expected["output"][-rows:] if rows else model.expected["output"]
            assert mine.json()["outputs"][0]["data"] == pytest.approx(want)
        (mine_triton, mine_array), (their_triton, their_array) = (
            triton_infer(ours, name, model.expected),
            triton_infer(theirs, name, model.expected),
        )
        assert "binary_data_size" in mine_triton["outputs"][0]["parameters"], "binary, as tritonclient asks"
        assert [o["datatype"] for o in mine_triton["outputs"]] == [o["datatype"] for o in their_triton["outputs"]]
        assert mine_triton["outputs"][0]["name"] == their_triton["outputs"][0]["name"] == "output-0"
        assert mine_array.reshape(-1).tolist() == their_array.reshape(-1).tolist()
        np.testing.assert_allclose(mine_array.reshape(-1), model.expected["output"])
    assert ours.proc.returncode == 0, "SIGTERM stops the server cleanly"
    assert "ready in" in ours.output() and "stopped" in ours.output()


@pytest.mark.e2e
@pytest.mark.parametrize("name", TOO_OLD)
def test_an_mlflow_older_than_the_fastapi_scoring_server_is_refused(
    name: str, models: dict[str, BuiltModel], env_cache: Path, tmp_path: Path
) -> None:
    env = _env(models, name, tmp_path, env_cache)
    proc = run_to_exit(mlflow_backend_command(env, free_port()), mlflow_backend_env(), tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    error = proc.stderr.strip().splitlines()[-1]
    assert f"MLflow {models[name].expected['mlflow']}" in error
    assert "needs MLflow >= 2.21.0" in error and "--backend mlserver" in error


@pytest.mark.e2e
@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_model_that_fails_to_load_exits_non_zero_with_its_error(
    workers: str, models: dict[str, BuiltModel], env_cache: Path, tmp_path: Path
) -> None:
    """loader-raises fails init's verify step, so its venv is built without it; with two workers the server
    still exits (uvicorn's own supervisor would restart the workers forever)."""
    env = _env(models, "loader-raises", tmp_path, env_cache, "--no-verify")
    proc = run_to_exit(mlflow_backend_command(env, free_port(), "--workers", workers), mlflow_backend_env(), tmp_path)
    assert proc.returncode == 8, proc.stderr[-2000:]
    error = [line for line in proc.stderr.splitlines() if "error:" in line][-1]
    assert "the model failed to load" in error and "model weights are corrupt" in error


@pytest.mark.e2e
def test_time_to_ready_beside_mlserver(models: dict[str, BuiltModel], env_cache: Path, tmp_path: Path) -> None:
    """Not an assertion on time (the machine is shared): both servers started twice, alternately, from the same
    venv; the seconds to /v2/models/<name>/ready are printed for the report."""
    env = _env(models, "sklearn-columns", tmp_path, env_cache)
    seconds: dict[str, list[float]] = {"mlflow backend": [], "mlserver": []}
    for round_ in range(2):
        with mlflow_backend(env, tmp_path / f"ours-{round_}.log") as ours:
            seconds["mlflow backend"].append(ours.seconds_to_ready)
        with mlserver(env, tmp_path / f"mlserver-{round_}.log") as theirs:
            seconds["mlserver"].append(theirs.seconds_to_ready)
    print(f"\ntime to ready (s), sklearn-columns, rounds 1 and 2: {seconds}")
    assert all(len(v) == 2 for v in seconds.values())
