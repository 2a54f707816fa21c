"""The mlflow backend beside MLServer on a PythonModel built here with the test venv's MLflow (models from code:
no pickled test classes) and served from the venv `mlflow-kserve init --backend mlserver` builds for
sklearn-columns (MLflow 3.17, MLServer 1.7.1). One model answers in every output kind its ``params`` ask for, so
one server start covers: request ``parameters`` reaching ``predict(params=...)``, string (BYTES) columns in and out,
a dict of arrays,
the other output kinds, a model raising (500, the worker keeps serving), each bad request (4xx, the server keeps
serving), versioned routes, MLflow's own routes, two workers and SIGTERM."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from support.cli import wait_ready
from support.models import CACHE, BuiltModel
from support.services import free_port, stop
from support.v2servers import (
    ModelEnv,
    init_env,
    mlflow_backend,
    mlflow_backend_command,
    mlflow_backend_env,
    mlserver,
    write_model_settings,
)

NAME, VERSION = "kinds", "3"
MODEL_CODE = """
import mlflow
import numpy as np
import pandas as pd


class Kinds(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        kind, scale = params["kind"], params["scale"]
        y = model_input["x"].to_numpy(dtype=np.float64) * scale
        shout = [str(t).upper() for t in model_input["text"]]
        if kind == "raise":
            raise ValueError("scale out of range: the model refuses this input")
        return {
            "frame": lambda: pd.DataFrame({"y": y, "shout": pd.Series(shout, dtype=object)}),
            "array": lambda: y,
            "matrix": lambda: np.arange(6, dtype=np.int32).reshape(2, 3),
            "bools": lambda: y > 3,
            "nan": lambda: np.array([np.nan, 1.5]),
            "dict": lambda: {"y": y, "shout": np.array(shout)},
            "strings": lambda: shout,
            "series": lambda: pd.Series(y),
            "list": lambda: y.tolist(),
            "scalar": lambda: float(y.sum()),
            "text": lambda: " ".join(shout),
        }[kind]()


mlflow.models.set_model(Kinds())
"""
# Where MLServer 1.7.1 answers 500 (its fallback codec takes only a dict of arrays); ours answers these:
MLSERVER_FAILS = {
    "series": [{"name": "output-1", "shape": [3, 1], "datatype": "FP64", "parameters": {"content_type": "np"},
                "data": [2.0, 4.0, 6.0]}],
    "list": [{"name": "output-1", "shape": [3, 1], "datatype": "FP64", "parameters": {"content_type": "np"},
              "data": [2.0, 4.0, 6.0]}],
    "scalar": [{"name": "output-1", "shape": [1], "datatype": "FP64", "parameters": {"content_type": "np"},
                "data": [12.0]}],
    "text": [{"name": "output-1", "shape": [1, 1], "datatype": "BYTES", "parameters": {"content_type": "str"},
              "data": ["A BÉ C"]}],
}  # fmt: skip
ANSWERED_ALIKE = ["frame", "array", "matrix", "bools", "nan", "dict", "strings"]


def request(kind: str, **change: Any) -> dict[str, Any]:
    inputs = [
        {"name": "x", "shape": [3], "datatype": "FP64", "data": [1.0, 2.0, 3.0]},
        {"name": "text", "shape": [3], "datatype": "BYTES", "data": ["a", "bé", "c"]},
    ]
    return {"inputs": inputs, "parameters": {"kind": kind, "scale": 2.0}, **change}


@pytest.fixture(scope="module")
def env(models: dict[str, BuiltModel], tmp_path_factory: pytest.TempPathFactory) -> ModelEnv:
    """The kinds model saved with the test venv's MLflow, beside the sklearn-columns venv (MLflow 3.17.2)."""
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    work = tmp_path_factory.mktemp("kinds")
    columns = init_env(models["sklearn-columns"].path, "sklearn-columns", work / "columns", CACHE / "v2-env-cache",
                       "--backend", "mlserver")  # fmt: skip
    code = work / "kinds_model.py"
    code.write_text(MODEL_CODE)
    example = pd.DataFrame({"x": [1.0, 2.0], "text": ["a", "b"]})
    signature = infer_signature(
        example, pd.DataFrame({"y": [1.0], "shout": ["A"]}), params={"kind": "frame", "scale": 1.0}
    )
    mlflow.pyfunc.save_model(work / "model", python_model=str(code), signature=signature,
                             pip_requirements=[f"mlflow=={mlflow.__version__}"])  # fmt: skip
    write_model_settings(work / "models", NAME, work / "model", VERSION)
    return ModelEnv(NAME, columns.python, work / "models")


@pytest.fixture(scope="module")
def both(env: ModelEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    logs = tmp_path_factory.mktemp("logs")
    with (
        mlserver(env, logs / "mlserver.log") as theirs,
        mlflow_backend(env, logs / "ours.log", "--max-request-bytes", "4096") as ours,
    ):
        yield ours, theirs
    assert ours.proc.returncode == 0, "SIGTERM: graceful stop, exit 0"


@pytest.mark.e2e
@pytest.mark.parametrize("kind", ANSWERED_ALIKE)
def test_each_output_kind_is_answered_exactly_like_mlserver(kind: str, both: tuple[Any, Any]) -> None:
    ours, theirs = both
    mine, reference = ours.infer(NAME, request(kind)), theirs.infer(NAME, request(kind))
    assert mine.status_code == reference.status_code == 200, (mine.text, reference.text)
    for field in ("outputs", "model_name", "model_version", "parameters"):
        assert mine.json()[field] == reference.json()[field], field
    if kind in ("frame", "array", "dict"):
        assert mine.json()["outputs"][0]["data"] == [2.0, 4.0, 6.0], "params.scale reached predict"
    if kind in ("frame", "dict", "strings"):
        shout = next(o for o in mine.json()["outputs"] if o["datatype"] == "BYTES")
        assert shout["data"] == ["A", "BÉ", "C"], "UTF-8 strings in and out"


@pytest.mark.e2e
@pytest.mark.parametrize("kind", list(MLSERVER_FAILS))
def test_what_mlserver_cannot_encode_gets_an_answer(kind: str, both: tuple[Any, Any]) -> None:
    ours, theirs = both
    mine, reference = ours.infer(NAME, request(kind)), theirs.infer(NAME, request(kind))
    assert reference.status_code == 500, reference.text
    assert mine.status_code == 200 and mine.json()["outputs"] == MLSERVER_FAILS[kind]


@pytest.mark.e2e
def test_an_exception_in_the_model_is_a_500_with_its_text_and_the_server_goes_on(both: tuple[Any, Any]) -> None:
    ours, theirs = both
    for _ in range(3):
        failed = ours.infer(NAME, request("raise"))
        assert failed.status_code == 500 == theirs.infer(NAME, request("raise")).status_code
        assert "scale out of range: the model refuses this input" in failed.json()["error"]
        assert ours.infer(NAME, request("array")).status_code == 200


BAD_REQUESTS = [
    ("unknown input", request("array", inputs=[*request("array")["inputs"], {"name": "z", "shape": [3],
     "datatype": "FP64", "data": [1, 2, 3]}]), 400, "unknown input 'z'"),
    ("missing input", request("array", inputs=request("array")["inputs"][:1]), 400, "missing inputs"),
    ("wrong shape", request("array", inputs=[{**request("array")["inputs"][0], "shape": [4]},
     request("array")["inputs"][1]]), 400, "shape [4] needs 4"),
    ("wrong datatype", request("array", inputs=[{**request("array")["inputs"][0], "datatype": "BYTES",
     "data": ["1", "2", "3"]}, request("array")["inputs"][1]]), 400, "x"),
    ("data not matching datatype", request("array", inputs=[{**request("array")["inputs"][0],
     "data": [1, "two", 3]}, request("array")["inputs"][1]]), 400, "FP64 data must be numbers"),
    ("a param of the wrong type", request("array", parameters={"kind": "array", "scale": "big"}), 400, "scale"),
    ("malformed JSON", b'{"inputs": [', 400, "not valid JSON"),
    ("no inputs", {"parameters": {}}, 400, "needs 'inputs'"),
    ("body over the size limit", request("array", pad="x" * 5000), 413, "over 4096 bytes"),
]  # fmt: skip


@pytest.mark.e2e
@pytest.mark.parametrize(("case", "payload", "status", "message"), BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS])
def test_a_bad_request_gets_a_v2_error_and_the_server_goes_on(
    case: str, payload: Any, status: int, message: str, both: tuple[Any, Any]
) -> None:
    ours, _ = both
    answer = ours.infer(NAME, payload)
    assert answer.status_code == status, answer.text
    assert set(answer.json()) == {"error"} and message in answer.json()["error"]
    assert ours.infer(NAME, request("array")).json()["outputs"][0]["data"] == [2.0, 4.0, 6.0]


@pytest.mark.e2e
def test_v2_routes_answer_like_mlserver_and_mlflows_own_routes_stay(both: tuple[Any, Any]) -> None:
    ours, theirs = both

    def get(server: Any, path: str) -> requests.Response:
        return requests.get(server.url + path, timeout=30)

    paths = ["/v2/health/live", "/v2/health/ready", f"/v2/models/{NAME}/ready", "/v2/models/nope",
             f"/v2/models/{NAME}/versions/{VERSION}/ready", "/v2/models/nope/ready",
             f"/v2/models/{NAME}/versions/9/ready", f"/v2/models/{NAME}/versions/9"]  # fmt: skip
    for path in paths:
        mine, reference = get(ours, path), get(theirs, path)
        assert mine.status_code == reference.status_code, path
        assert mine.content == reference.content, path
    versioned = ours.infer(NAME, request("array"), version=VERSION)
    assert versioned.status_code == 200 and versioned.json()["model_version"] == VERSION
    assert ours.infer(NAME, request("array"), version="9").json() == {"error": f"Model {NAME} with version 9 not found"}
    metadata = get(ours, f"/v2/models/{NAME}").json()
    assert [(t["name"], t["datatype"]) for t in metadata["inputs"]] == [("x", "FP64"), ("text", "BYTES")]
    assert metadata["parameters"] == {"content_type": "pd"}
    assert get(ours, "/v2").json()["name"] == "mlflow"
    assert get(ours, "/ping").status_code == 200 and get(ours, "/version").text.startswith("3.")
    invocation = requests.post(
        ours.url + "/invocations",
        json={"dataframe_split": {"columns": ["x", "text"], "data": [[1.0, "a"]]}, "params": {"kind": "array"}},
        timeout=60,
    )
    assert invocation.status_code == 200 and invocation.json() == {"predictions": [1.0]}


@pytest.mark.e2e
def test_two_workers_each_load_the_model_and_sigterm_stops_them_all(env: ModelEnv, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "workers.log"
    with log.open("w") as out:
        command = mlflow_backend_command(env, port, "--workers", "2")
        proc = subprocess.Popen(command, env=mlflow_backend_env(), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=tmp_path)  # fmt: skip
        try:
            wait_ready(proc, f"http://127.0.0.1:{port}/v2/models/{NAME}", 600, log.read_text)
            for _ in range(10):
                answer = requests.post(f"http://127.0.0.1:{port}/v2/models/{NAME}/infer", json=request("array"),
                                       timeout=60)  # fmt: skip
                assert answer.json()["outputs"][0]["data"] == [2.0, 4.0, 6.0]
            assert _ready_line(log, "2 workers"), log.read_text()
            workers = _children(proc.pid)
            assert len(workers) == 2, workers
            assert _metric(log, "model_infer_request_success_total") == 10.0, "both workers' counts, summed"
        finally:
            stop(proc, signal.SIGTERM, 90)
    assert proc.returncode == 0, log.read_text()[-3000:]
    assert log.read_text().count(f"model {NAME} loaded in") == 2
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers), "no worker outlives the server"


@pytest.mark.e2e
def test_sigterm_while_the_model_loads_stops_the_server_with_exit_0(env: ModelEnv, tmp_path: Path) -> None:
    returncode, text = _sigterm_once_logged(env, tmp_path / "early.log", "loading model")
    assert returncode == 0, text[-3000:]
    assert "stopped" in text, "either before the model loaded or, if it was that fast, after"


def _sigterm_once_logged(env: ModelEnv, log: Path, line: str) -> tuple[int, str]:
    """Start the mlflow backend on ``env``, SIGTERM it as soon as its output shows ``line``: its exit code and log."""
    with log.open("w") as out:
        proc = subprocess.Popen(mlflow_backend_command(env, free_port()), env=mlflow_backend_env(), stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=log.parent)  # fmt: skip
        try:
            deadline = time.monotonic() + 120
            while line not in log.read_text():
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
        finally:
            stop(proc, signal.SIGTERM, 90)
    return proc.returncode, log.read_text()


NESTED_MODEL_CODE = """
import ctypes

import mlflow


class Never(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input


# What some extension modules do while they import: run Python through the C API's PyRun_String.
run = ctypes.pythonapi.PyRun_String
run.restype = ctypes.py_object
run.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.py_object, ctypes.py_object]
print("sleeping inside PyRun_String", flush=True)
scope = {}
run(b"import time\\ntime.sleep(120)\\n", 257, scope, scope)  # 257: Py_file_input
mlflow.models.set_model(Never())
"""


@pytest.mark.e2e
def test_sigterm_inside_c_code_that_runs_python_still_exits_0(env: ModelEnv, tmp_path: Path) -> None:
    """Seen in CI: "stopped before the model was loaded", then exit -2. A plain KeyboardInterrupt that passes
    through PyRun_String sets CPython's unhandled-interrupt flag, and the process then kills itself with SIGINT at
    exit whatever the server returned; the server raises its own subclass, which CPython does not flag."""
    import mlflow

    code = tmp_path / "nested_model.py"
    code.write_text(NESTED_MODEL_CODE)
    mlflow.pyfunc.save_model(tmp_path / "model", python_model=str(code))
    write_model_settings(tmp_path / "models", "nested", tmp_path / "model", "1")
    nested = ModelEnv("nested", env.python, tmp_path / "models")
    returncode, text = _sigterm_once_logged(nested, tmp_path / "nested.log", "sleeping inside PyRun_String")
    assert "stopped before the model was loaded" in text, text[-3000:]
    assert returncode == 0, text[-3000:]


@pytest.mark.e2e
def test_metrics_count_inferences_when_the_venv_has_prometheus_client(both: tuple[Any, Any]) -> None:
    ours, _ = both
    before = _metric(ours.log, "model_infer_request_success_total")
    ours.infer(NAME, request("array"))
    assert _metric(ours.log, "model_infer_request_success_total") == before + 1


@pytest.mark.e2e
def test_no_metrics_port_without_prometheus_client_in_the_venv(env: ModelEnv, tmp_path: Path) -> None:
    """The test venv (MLflow 3.17, no prometheus_client) as the model's venv: the server says so and serves."""
    import importlib.util

    assert importlib.util.find_spec("prometheus_client") is None
    bare = ModelEnv(NAME, Path(sys.executable), env.models_dir)
    with mlflow_backend(bare, tmp_path / "bare.log") as ours:
        assert ours.infer(NAME, request("array")).status_code == 200
        assert "no metrics port: the model's venv has no prometheus_client" in ours.output()
        assert "metrics on" not in ours.output()


def _metric(log: Path, name: str) -> float:
    """A sample of the server's /metrics, summed over labels (the port is in its "metrics on" log line)."""
    url = re.search(r"metrics on (http://\S+)", log.read_text()).group(1)
    text = requests.get(url.replace("0.0.0.0", "127.0.0.1"), timeout=30).text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + "{"))


def _ready_line(log: Path, text: str, within: float = 30.0) -> bool:
    """The server's "ready in" line with ``text`` appears in ``log`` within ``within`` seconds. The supervisor
    writes it once every worker is ready, checking twice a second, so it may follow the first answer to /ready
    (which one ready worker gives) by half a second or more."""
    deadline = time.monotonic() + within
    while not any("ready in" in line and text in line for line in log.read_text().splitlines()):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _children(pid: int) -> list[int]:
    """The worker processes (multiprocessing spawn children), not multiprocessing's resource tracker."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(c) for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]


def test_a_stop_that_an_import_wrapped_is_still_a_stop() -> None:
    """SIGTERM while the model loads raises KeyboardInterrupt wherever the loader is; inside a class's
    __set_name__ (pydantic, while MLflow imports) Python 3.11 wraps it in RuntimeError. Seen in a clone run: the
    server then said "the model failed to load" and exited 8 instead of stopping with 0."""
    from mlflow_kserve_server.model import _interrupted

    class Interrupting:
        def __set_name__(self, owner: type, name: str) -> None:
            raise KeyboardInterrupt

    try:
        type("Status", (), {"check_status": Interrupting()})
    except BaseException as exc:  # RuntimeError on 3.11, KeyboardInterrupt itself on 3.12+
        caught = exc
    assert _interrupted(caught)
    try:
        try:
            raise ValueError("bad weights")
        except ValueError as inner:
            raise RuntimeError("load failed") from inner
    except RuntimeError as exc:
        assert not _interrupted(exc), "a real load error stays a load error"
