"""V2 gRPC on the mlflow backend, with raw gRPC calls whose messages are built by the server's own run-time
descriptor (grpc_proto.py, here on the test venv's protobuf 7): answers equal the REST answers on every output
kind, with raw contents (tritonclient's way) and typed contents, errors are REST's statuses and messages as gRPC
codes, and the connection goes on after each. Served twice:

- from a venv `mlflow-kserve init --grpc --constraint 'protobuf==3.20.*'` builds for sklearn-columns (MLflow
  3.17.2 resolves with protobuf 3.20.3: the server's messages built by protobuf 3.20's MessageFactory), the kinds
  model (support/kinds.py) and sklearn-columns itself, one server each;
- by `mlflow-kserve run --grpc` of the model logged from a uv project, which pins protobuf 7 (the product path:
  the plan adds grpcio and nothing else, and says so).
"""

from __future__ import annotations

import math
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import requests
from mlflow_kserve_server.grpc_proto import SERVICE, messages
from mlflow_kserve_server.grpc_server import METHODS
from mlflow_kserve_server.raw import from_raw, to_raw
from support.cli import report, served, v2_request
from support.kinds import NAME, VERSION, request, save_kinds_model
from support.models import BuiltModel, build, model_pins
from support.services import free_port
from support.v2servers import ModelEnv, Server, init_env, mlflow_backend

KINDS = ["frame", "array", "matrix", "bools", "nan", "dict", "strings", "series", "list", "scalar", "text"]


class Client:
    """Raw V2 gRPC calls with the server's own message classes."""

    def __init__(self, port: int) -> None:
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.m = messages()

    def __call__(self, method: str, **fields: Any) -> Any:
        return self.send(method, getattr(self.m, METHODS[method][0])(**fields))

    def send(self, method: str, message: Any) -> Any:
        response_type = getattr(self.m, METHODS[method][1])
        call = self.channel.unary_unary(f"/{SERVICE}/{method}", request_serializer=type(message).SerializeToString,
                                        response_deserializer=response_type.FromString)  # fmt: skip
        return call(message, timeout=60)


def infer_message(payload: dict[str, Any], raw: bool = True) -> Any:
    """A REST request body as a ModelInferRequest: raw_input_contents (what tritonclient sends) or contents."""
    from mlflow_kserve_server.datatypes import NUMPY_DTYPES
    from mlflow_kserve_server.grpc_codec import CONTENTS, set_parameters

    m = messages()
    message = m.ModelInferRequest(model_name=NAME)
    set_parameters(message.parameters, payload.get("parameters", {}))
    for item in payload["inputs"]:
        tensor = message.inputs.add(name=item["name"], datatype=item["datatype"], shape=item["shape"])
        data = np.array(item["data"], dtype=NUMPY_DTYPES[item["datatype"]])
        if raw:
            message.raw_input_contents.append(to_raw(data, item["datatype"]))
        elif item["datatype"] == "BYTES":
            tensor.contents.bytes_contents.extend(v.encode() for v in item["data"])
        else:
            getattr(tensor.contents, CONTENTS[item["datatype"]]).extend(item["data"])
    for output in payload.get("outputs", ()):
        message.outputs.add(name=output["name"])
    return message


def as_rest(response: Any) -> list[dict[str, Any]]:
    """A ModelInferResponse's outputs as REST JSON writes them (BYTES as text, NaN as null)."""
    outputs = []
    for index, output in enumerate(response.outputs):
        if response.raw_output_contents:
            data = from_raw(response.raw_output_contents[index], output.datatype, list(output.shape), output.name)
            values = data.tolist()
        else:
            field = output.contents.ListFields()
            values = list(field[0][1]) if field else []
        if output.datatype == "BYTES":
            values = [v.decode() for v in values]
        elif output.datatype.startswith("FP"):
            values = [None if math.isnan(v) or math.isinf(v) else v for v in values]
        item = {"name": output.name, "shape": list(output.shape), "datatype": output.datatype}
        parameters = {k: p.string_param for k, p in output.parameters.items()}
        if parameters:
            item["parameters"] = parameters
        item["data"] = values
        outputs.append(item)
    return outputs


@pytest.fixture(scope="module")
def proto320(models: dict[str, BuiltModel], shared_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> ModelEnv:
    work = tmp_path_factory.mktemp("grpc")
    env = init_env(models["sklearn-columns"].path, "sklearn-columns", work / "columns", shared_cache,
                   "--grpc", "--constraint", "protobuf==3.20.*")  # fmt: skip
    version = subprocess.run([env.python, "-c", "import google.protobuf as p, grpc; print(p.__version__)"],
                             capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    assert version.startswith("3.20."), version
    return env


@pytest.fixture(scope="module")
def kinds(proto320: ModelEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Client]]:
    work = tmp_path_factory.mktemp("kinds-grpc")
    env = ModelEnv(NAME, proto320.python, save_kinds_model(work))
    port = free_port()
    with mlflow_backend(env, work / "server.log", "--grpc", "--grpc-port", str(port)) as server:
        yield server, Client(port)
    assert server.proc.returncode == 0


@pytest.mark.e2e
@pytest.mark.parametrize("raw", [True, False], ids=["raw contents", "typed contents"])
def test_grpc_answers_equal_rest_answers_for_every_output_kind(raw: bool, kinds: tuple[Server, Client]) -> None:
    server, client = kinds
    for kind in KINDS:
        rest = server.infer(NAME, request(kind)).json()
        answer = client.send("ModelInfer", infer_message(request(kind), raw))
        assert (answer.model_name, answer.model_version) == (rest["model_name"], rest["model_version"])
        assert answer.parameters["content_type"].string_param == rest["parameters"]["content_type"]
        assert bool(answer.raw_output_contents) is raw, "raw outputs for raw inputs, as KServe and Triton answer"
        assert as_rest(answer) == rest["outputs"], kind
    picked = client.send("ModelInfer", infer_message(request("dict", outputs=[{"name": "shout"}])))
    assert [o["name"] for o in as_rest(picked)] == ["shout"], "requested outputs"


@pytest.mark.e2e
def test_grpc_health_and_metadata_equal_rest(kinds: tuple[Server, Client]) -> None:
    server, client = kinds
    assert client("ServerLive").live and client("ServerReady").ready
    assert client("ModelReady", name=NAME).ready and client("ModelReady", name=NAME, version=VERSION).ready
    rest = requests.get(f"{server.url}/v2", timeout=30).json()
    metadata = client("ServerMetadata")
    assert (metadata.name, metadata.version, list(metadata.extensions)) == (rest["name"], rest["version"],
                                                                             rest["extensions"])  # fmt: skip
    rest_model = requests.get(f"{server.url}/v2/models/{NAME}", timeout=30).json()
    model = client("ModelMetadata", name=NAME)
    assert (model.name, list(model.versions)) == (NAME, [VERSION])
    for key in ("inputs", "outputs"):
        assert [(t.name, t.datatype, list(t.shape)) for t in getattr(model, key)] == [
            (t["name"], t["datatype"], t["shape"]) for t in rest_model[key]
        ]


GRPC_ERRORS = [
    ("unknown model", lambda m: setattr(m, "model_name", "nope"), grpc.StatusCode.NOT_FOUND, "Model nope not found"),
    ("unknown version", lambda m: setattr(m, "model_version", "9"), grpc.StatusCode.NOT_FOUND, "with version 9"),
    ("raw data of the wrong size", lambda m: m.raw_input_contents.__setitem__(0, b"123"),
     grpc.StatusCode.INVALID_ARGUMENT, "3 bytes of binary data, but shape [3] of FP64 needs 24"),
    ("strings for a number column", lambda m: setattr(m.inputs[0], "datatype", "BYTES") or
     m.raw_input_contents.__setitem__(0, to_raw(np.array(["1", "2", "3"], dtype=object), "BYTES")),
     grpc.StatusCode.INVALID_ARGUMENT, "datatype BYTES, but the model's signature says this column is FP64"),
    ("an unknown output", lambda m: m.outputs.add(name="nope"), grpc.StatusCode.INVALID_ARGUMENT, "unknown output"),
    ("the model raises", lambda m: m.parameters["kind"].__setattr__("string_param", "raise"),
     grpc.StatusCode.INTERNAL, "the model failed: ValueError: scale out of range"),
]  # fmt: skip


@pytest.mark.e2e
@pytest.mark.parametrize(("case", "change", "code", "message"), GRPC_ERRORS, ids=[c[0] for c in GRPC_ERRORS])
def test_a_grpc_error_has_the_rest_message_and_the_channel_goes_on(
    case: str, change: Any, code: Any, message: str, kinds: tuple[Server, Client]
) -> None:
    _, client = kinds
    bad = infer_message(request("dict"))
    change(bad)
    with pytest.raises(grpc.RpcError) as error:
        client.send("ModelInfer", bad)
    assert error.value.code() == code and message in error.value.details(), error.value.details()
    assert "\n" not in error.value.details()
    assert as_rest(client.send("ModelInfer", infer_message(request("array"))))[0]["data"] == [2.0, 4.0, 6.0]


@pytest.mark.e2e
def test_grpc_requests_are_counted_in_the_metrics(kinds: tuple[Server, Client]) -> None:
    server, client = kinds
    url = re.search(r"metrics on (http://\S+)", server.output()).group(1)

    def grpc_ok() -> float:
        text = requests.get(url, timeout=30).text
        lines = [line for line in text.splitlines() if line.startswith("inference_requests_total{")]
        return sum(float(line.split()[-1]) for line in lines if 'protocol="grpc",status="200"' in line)

    before = grpc_ok()
    client.send("ModelInfer", infer_message(request("array")))
    assert grpc_ok() == before + 1


@pytest.mark.e2e
def test_a_real_model_over_grpc_on_protobuf_3_20(
    proto320: ModelEnv, models: dict[str, BuiltModel], tmp_path: Path
) -> None:
    model = models["sklearn-columns"]
    port = free_port()
    with mlflow_backend(proto320, tmp_path / "server.log", "--grpc", "--grpc-port", str(port)) as server:
        payload = v2_request(model.expected)
        rest = server.infer("sklearn-columns", payload).json()
        message = infer_message(payload)
        message.model_name = "sklearn-columns"
        answer = Client(port).send("ModelInfer", message)
    assert as_rest(answer) == rest["outputs"]
    assert rest["outputs"][0]["data"] == pytest.approx(model.expected["output"])
    assert "and grpc://127.0.0.1:" in server.output()


@pytest.mark.e2e
def test_run_grpc_serves_the_uv_project_model_pinning_protobuf_7_adding_grpcio(
    env: dict[str, str], shared_cache: Path, tmp_path: Path
) -> None:
    model = build("uv-project")
    port = free_port()
    args = ["--model-uri", str(model.path), "--grpc", "--work-dir", str(tmp_path / "work"),
            "--cache-dir", str(shared_cache)]  # fmt: skip
    with served(args, env, port, "uv-project", tmp_path / "run.log") as server:
        payload = v2_request(model.expected)
        rest = server.infer(payload)
        message = infer_message(payload)
        message.model_name = "uv-project"
        answer = Client(server.grpc_port).send("ModelInfer", message)
        assert f"gRPC on 127.0.0.1:{server.grpc_port}" in server.output(), "run's ready line names the gRPC port"
        facts = report(next((tmp_path / "work" / "models").glob("*/env")))
    assert as_rest(answer) == rest["outputs"]
    assert rest["outputs"][0]["data"] == pytest.approx(model.expected["output"])
    assert facts["backend"]["name"] == "mlflow" and facts["grpc"] is True
    assert facts["serving_stack"] == ["grpcio", "orjson"], "grpcio, and the optional orjson it always tries"
    pins = model_pins(model.path)
    assert facts["packages"]["protobuf"] == pins["protobuf"] and pins["protobuf"].startswith("7.")
    assert set(facts["packages"]) - set(pins) == {"grpcio", "orjson"}, "nothing else added"
