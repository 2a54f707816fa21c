"""The mlflow backend beside MLServer on a PythonModel built here with the test venv's MLflow (models from code:
no pickled test classes) and served from the venv `mlflow-kserve init --backend mlserver` builds for
sklearn-columns (MLflow 3.17, MLServer 1.7.1). One model answers in every output kind its ``params`` ask for, so
one start of each server covers: request ``parameters`` reaching ``predict(params=...)``, string (BYTES) columns
in and out, a dict of arrays, the other output kinds (MLServer's values; names and shapes as the metadata
declares), tritonclient's defaults (binary tensors both ways) and compressed bodies, requested outputs, a model
raising (500), each bad request (4xx) and body too big (413, a zip bomb too) with the next request on the same
connection, the health and metadata routes, MLflow's own routes, the metrics; then two workers (their metrics
summed) and SIGTERM."""

from __future__ import annotations

import gzip
import http.client
import json
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import tritonclient.http as triton
from support.cli import wait_ready
from support.kinds import NAME, VERSION, request, save_kinds_model
from support.models import BuiltModel
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

# Where MLServer 1.7.1 answers 500 (its fallback codec takes only a dict of arrays); ours answers these. The kinds
# model's signature declares two outputs (y, shout), so a single unnamed output is output-0, of its own shape.
MLSERVER_FAILS = {
    "series": [{"name": "output-0", "shape": [3], "datatype": "FP64", "parameters": {"content_type": "np"},
                "data": [2.0, 4.0, 6.0]}],
    "list": [{"name": "output-0", "shape": [3], "datatype": "FP64", "parameters": {"content_type": "np"},
              "data": [2.0, 4.0, 6.0]}],
    "scalar": [{"name": "output-0", "shape": [1], "datatype": "FP64", "parameters": {"content_type": "np"},
                "data": [12.0]}],
    "text": [{"name": "output-0", "shape": [1], "datatype": "BYTES", "parameters": {"content_type": "str"},
              "data": ["A BÉ C"]}],
}  # fmt: skip
ANSWERED_ALIKE = ["frame", "array", "matrix", "bools", "nan", "dict", "strings"]
LIMIT = 4096


@pytest.fixture(scope="module")
def env(models: dict[str, BuiltModel], shared_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> ModelEnv:
    """The kinds model saved with the test venv's MLflow, beside the sklearn-columns venv (MLflow 3.17.2)."""
    work = tmp_path_factory.mktemp("kinds")
    columns = init_env(models["sklearn-columns"].path, "sklearn-columns", work / "columns", shared_cache,
                       "--backend", "mlserver")  # fmt: skip
    return ModelEnv(NAME, columns.python, save_kinds_model(work))


@pytest.fixture(scope="module")
def both(env: ModelEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    logs = tmp_path_factory.mktemp("logs")
    with (
        mlserver(env, logs / "mlserver.log") as theirs,
        mlflow_backend(env, logs / "ours.log", "--max-request-bytes", str(LIMIT)) as ours,
    ):
        yield ours, theirs
    assert ours.proc.returncode == 0, "SIGTERM: graceful stop, exit 0"


class Connection:
    """One keep-alive HTTP connection: every request of a test goes over the same socket, so a server that drops
    the connection after an error fails the next request."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.http = http.client.HTTPConnection(host, int(port), timeout=60)

    def post(self, path: str, body: bytes, **headers: str) -> tuple[int, dict[str, str], bytes]:
        self.http.request("POST", path, body=body, headers={"content-type": "application/json", **headers})
        answer = self.http.getresponse()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()

    def infer(self, payload: Any, **headers: str) -> tuple[int, dict[str, str], bytes]:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return self.post(f"/v2/models/{NAME}/infer", body, **headers)

    def socket(self) -> Any:
        return self.http.sock


def _shape_agrees(mine: list[int], theirs: list[int]) -> bool:
    """MLServer adds a trailing 1 to one-dimensional outputs; ours keep the array's shape (the metadata's)."""
    return mine == theirs or (theirs[-1:] == [1] and mine == theirs[:-1])


@pytest.mark.e2e
@pytest.mark.parametrize("kind", ANSWERED_ALIKE)
def test_each_output_kind_gets_mlservers_values_named_as_the_metadata_says(kind: str, both: tuple[Any, Any]) -> None:
    ours, theirs = both
    mine, reference = ours.infer(NAME, request(kind)), theirs.infer(NAME, request(kind))
    assert mine.status_code == reference.status_code == 200, (mine.text, reference.text)
    for field in ("model_name", "model_version", "parameters"):
        assert mine.json()[field] == reference.json()[field], field
    pairs = list(zip(mine.json()["outputs"], reference.json()["outputs"], strict=True))
    for o, r in pairs:
        assert (o["datatype"], o["data"], o.get("parameters")) == (r["datatype"], r["data"], r.get("parameters"))
        assert o["name"] == r["name"].replace("output-1", "output-0"), "MLServer's single output is output-1"
        assert _shape_agrees(o["shape"], r["shape"]), (o["shape"], r["shape"])
    if kind in ("frame", "dict"):
        metadata = requests.get(f"{ours.url}/v2/models/{NAME}", timeout=30).json()["outputs"]
        declared = [(t["name"], t["datatype"], t["shape"]) for t in metadata]
        answered = [(o["name"], o["datatype"], [-1, *o["shape"][1:]]) for o in mine.json()["outputs"]]
        assert answered == declared, "infer returns the outputs the metadata lists"
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
def test_tritonclient_defaults_binary_tensors_and_compression_get_the_json_answer(both: tuple[Any, Any]) -> None:
    ours, _ = both
    json_answer = ours.infer(NAME, request("dict")).json()["outputs"]
    client = triton.InferenceServerClient(ours.url.removeprefix("http://"), network_timeout=60)
    x = triton.InferInput("x", [3], "FP64")
    x.set_data_from_numpy(np.array([1.0, 2.0, 3.0]))  # binary_data=True: tritonclient's default
    text = triton.InferInput("text", [3], "BYTES")
    text.set_data_from_numpy(np.array(["a", "bé", "c"], dtype=object))
    for algorithm in (None, "gzip", "deflate"):
        result = client.infer(
            NAME,
            [x, text],
            parameters={"kind": "dict", "scale": 2.0},
            request_compression_algorithm=algorithm,
            response_compression_algorithm=algorithm,
        )
        outputs = result.get_response()["outputs"]
        assert all("binary_data_size" in o["parameters"] for o in outputs), "tritonclient asks for binary outputs"
        assert [o["name"] for o in outputs] == [o["name"] for o in json_answer]
        assert result.as_numpy("y").reshape(-1).tolist() == json_answer[0]["data"]
        assert [v.decode() for v in result.as_numpy("shout").reshape(-1)] == json_answer[1]["data"]
    picked = client.infer(
        NAME,
        [x, text],
        parameters={"kind": "dict", "scale": 2.0},
        outputs=[triton.InferRequestedOutput("shout", binary_data=False)],
    ).get_response()
    assert [(o["name"], o["data"]) for o in picked["outputs"]] == [("shout", ["A", "BÉ", "C"])]
    assert client.get_server_metadata()["extensions"] == ["binary_tensor_data", "parameters"]
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(NAME)


@pytest.mark.e2e
def test_an_exception_in_the_model_is_a_500_with_its_text_and_the_connection_goes_on(both: tuple[Any, Any]) -> None:
    ours, theirs = both
    assert theirs.infer(NAME, request("raise")).status_code == 500
    connection = Connection(ours.url)
    for _ in range(3):
        status, _headers, body = connection.infer(request("raise"))
        assert status == 500 and json.loads(body) == {
            "error": "the model failed: ValueError: scale out of range: the model refuses this input"
        }
        socket = connection.socket()
        status, _headers, body = connection.infer(request("array"))
        assert status == 200 and connection.socket() is socket, "the same connection"


def _binary_request() -> tuple[bytes, dict[str, str]]:
    head = json.dumps({"inputs": [
        {"name": "x", "shape": [3], "datatype": "FP64", "parameters": {"binary_data_size": 24}},
        {"name": "text", "shape": [3], "datatype": "BYTES", "data": ["a", "b", "c"]},
    ], "parameters": {"kind": "array", "scale": 2.0}}).encode()  # fmt: skip
    return head + np.array([1.0, 2.0, 3.0]).tobytes(), {"inference-header-content-length": str(len(head))}


BAD_REQUESTS = [
    ("unknown input", request("array", inputs=[*request("array")["inputs"], {"name": "z", "shape": [3],
     "datatype": "FP64", "data": [1, 2, 3]}]), {}, 400, "unknown input 'z'"),
    ("missing input", request("array", inputs=request("array")["inputs"][:1]), {}, 400, "missing inputs"),
    ("wrong shape", request("array", inputs=[{**request("array")["inputs"][0], "shape": [4]},
     request("array")["inputs"][1]]), {}, 400, "shape [4] needs 4"),
    ("strings for a number column (pandas 3: ArrowInvalid)", request("array", inputs=[{**request("array")["inputs"][0],
     "datatype": "BYTES", "data": ["1", "2", "3"]}, request("array")["inputs"][1]]), {}, 400,
     "input 'x': datatype BYTES, but the model's signature says this column is FP64"),
    ("data not matching datatype", request("array", inputs=[{**request("array")["inputs"][0],
     "data": [1, "two", 3]}, request("array")["inputs"][1]]), {}, 400, "FP64 data must be numbers"),
    ("a param of the wrong type", request("array", parameters={"kind": "array", "scale": "big"}), {}, 400, "scale"),
    ("a bad protocol parameter", request("array", parameters={"kind": "array", "scale": 2.0,
     "binary_data_output": "yes"}), {}, 400, "binary_data_output must be true or false"),
    ("an unknown requested output", request("dict", outputs=[{"name": "nope"}]), {}, 400, "unknown output 'nope'"),
    ("malformed JSON", b'{"inputs": [', {}, 400, "not valid JSON"),
    ("no inputs", {"parameters": {}}, {}, 400, "needs 'inputs'"),
    ("binary data without its header", _binary_request()[0], {}, 400, "Inference-Header-Content-Length"),
    ("binary data shorter than declared", _binary_request()[0][:-8], _binary_request()[1], 400, "runs past the end"),
    ("a body that is not gzip", b"plain", {"content-encoding": "gzip"}, 400, "not valid gzip data"),
    ("an unknown content encoding", b"{}", {"content-encoding": "br"}, 415, "'br' is not supported"),
    ("a zip bomb: 3 kB that inflate to 3 MB", gzip.compress(json.dumps(request("array", pad="x" * 3_000_000))
     .encode(), 9), {"content-encoding": "gzip"}, 413, "over 4096 bytes (decompressed)"),
]  # fmt: skip


@pytest.mark.e2e
@pytest.mark.parametrize(("case", "payload", "headers", "status", "message"), BAD_REQUESTS,
                         ids=[c[0] for c in BAD_REQUESTS])  # fmt: skip
def test_a_bad_request_gets_a_one_line_v2_error_and_the_connection_goes_on(
    case: str, payload: Any, headers: dict[str, str], status: int, message: str, both: tuple[Any, Any]
) -> None:
    ours, _ = both
    connection = Connection(ours.url)
    answer_status, answer_headers, body = connection.infer(payload, **headers)
    assert answer_status == status, body
    error = json.loads(body)
    assert set(error) == {"error"} and message in error["error"], error
    assert "\n" not in error["error"] and "Traceback" not in error["error"]
    assert not re.search(r"(?<![\w.:/])/[\w.-]+/", error["error"]), "no server path"
    assert answer_headers.get("connection") != "close"
    socket = connection.socket()
    good_status, _headers, good = connection.infer(request("array"))
    assert good_status == 200 and json.loads(good)["outputs"][0]["data"] == [2.0, 4.0, 6.0]
    assert connection.socket() is socket, "the same connection served the next request"


@pytest.mark.e2e
def test_binary_inputs_and_a_body_over_the_limit(both: tuple[Any, Any]) -> None:
    """A body over the limit is read, dropped and answered 413 on a connection that goes on (a client still writing
    it reads the answer); one that declares more than the limit plus DRAIN_BYTES is refused unread, with
    Connection: close, and the next connection is served."""
    from mlflow_kserve_server.rest import DRAIN_BYTES

    ours, _ = both
    body, headers = _binary_request()
    status, _headers, answer = Connection(ours.url).infer(body, **headers)
    assert status == 200 and json.loads(answer)["outputs"][0]["data"] == [2.0, 4.0, 6.0]
    connection = Connection(ours.url)
    status, headers, answer = connection.infer(request("array", pad="x" * 5000))
    assert status == 413 and headers.get("connection") != "close"
    assert json.loads(answer) == {"error": json.loads(answer)["error"]} and "over 4096 bytes" in answer.decode()
    socket = connection.socket()
    assert connection.infer(request("array"))[0] == 200 and connection.socket() is socket, "the same connection"
    declared = str(4096 + DRAIN_BYTES + 1)
    status, headers, answer = Connection(ours.url).infer(b"{}", **{"content-length": declared})
    assert status == 413 and headers["connection"] == "close" and "over 4096 bytes" in answer.decode()
    assert Connection(ours.url).infer(request("array"))[0] == 200


@pytest.mark.e2e
def test_health_metadata_and_mlflows_own_routes(both: tuple[Any, Any]) -> None:
    ours, theirs = both

    def get(server: Any, path: str) -> requests.Response:
        return requests.get(server.url + path, timeout=30)

    assert get(ours, "/v2/health/live").json() == {"live": True}, "the KServe SDK reads this body"
    assert get(ours, "/v2/health/ready").json() == {"ready": True}
    assert get(ours, f"/v2/models/{NAME}/ready").json() == {"name": NAME, "ready": True}
    paths = ["/v2/health/live", "/v2/health/ready", f"/v2/models/{NAME}/ready", "/v2/models/nope",
             f"/v2/models/{NAME}/versions/{VERSION}/ready", "/v2/models/nope/ready",
             f"/v2/models/{NAME}/versions/9/ready", f"/v2/models/{NAME}/versions/9"]  # fmt: skip
    for path in paths:
        assert get(ours, path).status_code == get(theirs, path).status_code, path
    assert get(ours, "/v2/models/nope").json() == {"error": "Model nope not found"}
    versioned = ours.infer(NAME, request("array"), version=VERSION)
    assert versioned.status_code == 200 and versioned.json()["model_version"] == VERSION
    assert ours.infer(NAME, request("array"), version="9").json() == {"error": f"Model {NAME} with version 9 not found"}
    metadata = get(ours, f"/v2/models/{NAME}").json()
    assert [(t["name"], t["datatype"], t["shape"]) for t in metadata["inputs"]] == [
        ("x", "FP64", [-1, 1]), ("text", "BYTES", [-1, 1])
    ]  # fmt: skip
    assert [(t["name"], t["datatype"]) for t in metadata["outputs"]] == [("y", "FP64"), ("shout", "BYTES")]
    assert metadata["parameters"] == {"content_type": "pd"} and metadata["versions"] == [VERSION]
    server = get(ours, "/v2").json()
    assert server["name"] == "mlflow" and server["extensions"] == ["binary_tensor_data", "parameters"]
    assert get(ours, "/ping").status_code == 200 and get(ours, "/version").text.startswith("3.")
    invocation = requests.post(
        ours.url + "/invocations",
        json={"dataframe_split": {"columns": ["x", "text"], "data": [[1.0, "a"]]}, "params": {"kind": "array"}},
        timeout=60,
    )
    assert invocation.status_code == 200 and invocation.json() == {"predictions": [1.0]}


@pytest.mark.e2e
def test_metrics_count_requests_by_status_with_no_package_added(both: tuple[Any, Any]) -> None:
    ours, _ = both
    ok, bad = (
        _metric(ours.log, "inference_requests_total", 'status="200"'),
        _metric(ours.log, "inference_requests_total", 'status="400"'),
    )
    predicted = _metric(ours.log, "request_predict_seconds_count")
    ours.infer(NAME, request("array"))
    ours.infer(NAME, b"{")
    assert _metric(ours.log, "inference_requests_total", 'status="200"') == ok + 1
    assert _metric(ours.log, "inference_requests_total", 'status="400"') == bad + 1
    assert _metric(ours.log, "request_predict_seconds_count") == predicted + 1, "KServe's predict histogram"
    text = _metrics_text(ours.log)
    assert "# TYPE request_predict_seconds histogram" in text and 'le="+Inf"' in text


@pytest.mark.e2e
def test_two_workers_each_load_the_model_their_metrics_summed_and_sigterm_stops_them_all(
    env: ModelEnv, tmp_path: Path
) -> None:
    port = free_port()
    log = tmp_path / "workers.log"
    with log.open("w") as out:
        command = mlflow_backend_command(env, port, "--workers", "2")
        proc = subprocess.Popen(command, env=mlflow_backend_env(), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=tmp_path)  # fmt: skip
        try:
            wait_ready(proc, f"http://127.0.0.1:{port}/v2/models/{NAME}", 600, log.read_text)
            assert _ready_line(log, "2 workers"), log.read_text()
            for _ in range(10):  # a new connection each: both workers answer some
                answer = requests.post(f"http://127.0.0.1:{port}/v2/models/{NAME}/infer", json=request("array"),
                                       timeout=60)  # fmt: skip
                assert answer.json()["outputs"][0]["data"] == [2.0, 4.0, 6.0]
            workers = _children(proc.pid)
            assert len(workers) == 2, workers
            assert _metric(log, "inference_requests_total", 'status="200"') == 10.0, "both workers' counts, summed"
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


def _sigterm_once_logged(env: ModelEnv, log: Path, line: str, **variables: str) -> tuple[int, str]:
    """Start the mlflow backend on ``env`` (with the environment ``variables``), SIGTERM it as soon as its output
    shows ``line``: its exit code and log."""
    with log.open("w") as out:
        proc = subprocess.Popen(mlflow_backend_command(env, free_port()), env=mlflow_backend_env(**variables),
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=log.parent)  # fmt: skip
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
import os

import mlflow


class Never(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input


# What some extension modules do while they import: run Python through the C API's PyRun_String. Only in the
# server: save_model runs this file too (twice), and would sleep 4 minutes.
if os.environ.get("NESTED_MODEL_SLEEPS"):
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
    returncode, text = _sigterm_once_logged(
        nested, tmp_path / "nested.log", "sleeping inside PyRun_String", NESTED_MODEL_SLEEPS="1"
    )
    assert "stopped before the model was loaded" in text, text[-3000:]
    assert returncode == 0, text[-3000:]


def _metrics_text(log: Path) -> str:
    url = re.search(r"metrics on (http://\S+)", log.read_text()).group(1)
    return requests.get(url.replace("0.0.0.0", "127.0.0.1"), timeout=30).text


def _metric(log: Path, name: str, *labels: str) -> float:
    """A sample of the server's /metrics with ``labels``, summed over the rest (the port is in its "metrics on" log
    line)."""
    return sum(
        float(line.split()[-1])
        for line in _metrics_text(log).splitlines()
        if line.startswith(name + "{") and all(label in line for label in labels)
    )


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
