"""V2 conformance: the clients people use against both backends, on a model of every kind (support/v2models.py).

tritonclient[http,grpc] 2.73 and the KServe SDK 0.21, each in its own venv (support/v2clients.py), send JSON and
binary tensors (Triton's binary tensor data extension: tritonclient's default, the KServe SDK's raw tensors),
compressed bodies, requested outputs, health and metadata calls, and every kind of bad request; after each error
the same client (the same keep-alive connection, the same gRPC channel) must get the next answer right. gRPC
answers must equal REST answers, and tritonclient's defaults the JSON answer. What a test expects comes from the
protocol (KServe's Open Inference Protocol, Triton's binary_data and parameters extensions) and from the models'
own arithmetic, never from what a server answers today.

Each backend serves from the same venv, one start per (environment, backend) and session: MLServer serves every
model of an environment at once; the mlflow backend serves one model per process, so one start per model (with
its V2 gRPC service on). MLServer runs with our runtime (mlflow_kserve_mlserver) and passes everything except what
MLServer itself cannot do (docs/protocol.md, "What V2 clients get from each backend"): those cases are strict xfails
naming MLServer's file and line, so a fix shows up as a failure here. The runtime is proven on MLServer 1.6.1's row
too, on a model logged with MLflow 2.16 (the ``legacy`` tests at the end).
"""

from __future__ import annotations

import json
import math
import os
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from support.cli import mlflow_kserve, wait_ready
from support.models import CACHE
from support.v2clients import ClientError, ClientProcess
from support.v2models import ENVIRONMENTS, SERVED, Saved, save_all, save_legacy
from support.v2servers import ModelEnv, Server, mlflow_backend, mlserver

pytestmark = pytest.mark.e2e

BACKENDS = ("mlflow", "mlserver")
MODELS = list(SERVED)
LIMIT = 1024 * 1024  # the mlflow backend's --max-request-bytes here
PROBE = "x-probe-secret"  # a request header whose value must never come back in an answer
SECRET = "probe-7f3a9c-never-echo"
CLIENTS = [("triton", "http"), ("triton", "grpc"), ("kserve", "http"), ("kserve", "grpc")]
GRPC_STATUS = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 500: "INTERNAL"}


@dataclass(frozen=True)
class Target:
    """One model as one backend serves it."""

    backend: str
    model: Saved
    server: Server

    @property
    def name(self) -> str:
        return self.model.served

    @property
    def http(self) -> str:
        return self.server.url.removeprefix("http://")

    def address(self, transport: str) -> str:
        if transport == "http":
            return self.http
        assert self.server.grpc, f"the {self.backend} backend serves no gRPC here"
        return self.server.grpc


# --- what MLServer 1.7.1 cannot do: (the reason, where in SeldonIO/MLServer 1.7.1) --------------------------------
MLSERVER_BINARY = ("no binary tensor data extension: the infer route takes the body as a JSON InferenceRequest "
                   "(mlserver/rest/endpoints.py:89-93), so a binary body is FastAPI's 422")  # fmt: skip
MLSERVER_DEFLATE = "request bodies are decompressed for gzip only (mlserver/rest/requests.py:20-21)"
MLSERVER_NO_LIMIT = "no request body limit (mlserver/rest/server.py:74-97 configures uvicorn with none)"
MLSERVER_BOMB = "a gzip body is decompressed whole, with no limit (mlserver/rest/requests.py:20-21)"
MLSERVER_HEALTH = "the health routes answer an empty body (mlserver/rest/endpoints.py:33-39)"
MLSERVER_VALIDATION = ("a body that is not a valid InferenceRequest is FastAPI's 422 {\"detail\": [...]}: MLServer "
                       "registers an error handler for its own errors only (mlserver/rest/app.py:178-183, "
                       "mlserver/rest/errors.py:18)")  # fmt: skip
MLSERVER_GRPC_READY = ("gRPC ModelReady of an unknown model is UNKNOWN: it has no error handler, unlike "
                       "ModelMetadata and ModelInfer (mlserver/grpc/servicers.py:46-51)")  # fmt: skip
MLSERVER_GRPC_DOUBLE = ("a float parameter over gRPC is lost: MLServer's proto has no double_param "
                        "(proto/dataplane.proto:298-313), so Triton's arrives as no value "
                        "(mlserver/grpc/converters.py:27-33); our runtime answers 400 instead of running the model "
                        "without it")  # fmt: skip
MLSERVER_EXTENSIONS = ("server metadata lists settings.extensions (mlserver/handlers/dataplane.py:73), empty: "
                       "MLServer implements none of Triton's extensions")  # fmt: skip


def mlserver_cannot(reason: str) -> pytest.MarkDecorator:
    return pytest.mark.xfail(strict=True, reason=f"MLServer 1.7.1: {reason}")


def params_for(backend_cases: list[tuple[Any, ...]], cannot: dict[tuple[Any, ...], str]) -> list[Any]:
    """pytest params, the MLServer ones MLServer cannot pass marked as strict xfails with the reason."""
    out = []
    for case in backend_cases:
        reason = cannot.get(case)
        ident = "-".join(str(part) for part in case)
        out.append(pytest.param(*case, id=ident, marks=[mlserver_cannot(reason)] if reason else []))
    return out


# --- the servers and the clients -------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def targets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[tuple[str, str], Target]]:
    """Every model on both backends: one init per model (the models of an environment share its cache entry),
    one MLServer per environment, one mlflow backend per model; all started at once."""
    saved = save_all()
    work = tmp_path_factory.mktemp("v2-conformance")
    cache = CACHE / "v2-env-cache"
    envs: dict[str, ModelEnv] = {}
    for environment in ENVIRONMENTS:
        models = [m for m in saved.values() if m.environment == environment]
        for index, model in enumerate(models):  # the first builds (or finds) the venv, the others share it
            _init(model, work / environment, cache, verify=index == 0)
        env_dir = work / environment / "envs" / models[0].served
        envs[environment] = ModelEnv(models[0].served, env_dir / "venv" / "bin" / "python",
                                     work / environment / "models")  # fmt: skip
    logs = work / "logs"
    logs.mkdir()
    starts: dict[tuple[str, str], Any] = {}
    for environment, env in envs.items():
        starts[("mlserver", environment)] = mlserver(env, logs / f"mlserver-{environment}.log",
                                                     MLSERVER_PARALLEL_WORKERS="0", MLSERVER_DEBUG="false")  # fmt: skip
    for model in saved.values():
        env = envs[model.environment]
        one = ModelEnv(model.served, env.python, env.models_dir / model.served)
        starts[("mlflow", model.served)] = mlflow_backend(
            one, logs / f"mlflow-{model.served}.log", "--max-request-bytes", str(LIMIT), grpc=True
        )
    with ExitStack() as stack:
        started = start_all(starts, stack)
        found: dict[tuple[str, str], Target] = {}
        for model in saved.values():
            theirs = started[("mlserver", model.environment)]
            wait_ready(theirs.proc, f"{theirs.url}/v2/models/{model.served}", 300, theirs.output)
            found[("mlserver", model.served)] = Target("mlserver", model, theirs)
            found[("mlflow", model.served)] = Target("mlflow", model, started[("mlflow", model.served)])
        yield found


def _init(model: Saved, work: Path, cache: Path, verify: bool) -> None:
    args = ["init", "--model-uri", str(model.path), "--name", model.served, "--backend", "mlserver",
            "--env-dir", str(work / "envs" / model.served), "--models-dir", str(work / "models" / model.served),
            "--cache-dir", str(cache), "--serve-from-cache", *([] if verify else ["--no-verify"])]  # fmt: skip
    proc = mlflow_kserve(args, os.environ)
    assert proc.returncode == 0, proc.stderr[-3000:]


def start_all(contexts: dict[Any, Any], stack: ExitStack) -> dict[Any, Server]:
    """Enter every server's context at once (each start is a few seconds of imports); each one that started is
    stopped by ``stack``, also when another failed to start."""
    with ThreadPoolExecutor(len(contexts)) as pool:
        futures = {key: pool.submit(context.__enter__) for key, context in contexts.items()}
    for key, future in futures.items():
        if future.exception() is None:
            stack.callback(contexts[key].__exit__, None, None, None)
    return {key: future.result() for key, future in futures.items()}


@pytest.fixture(scope="session")
def clients(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ClientProcess]]:
    logs = tmp_path_factory.mktemp("v2-clients")
    with ThreadPoolExecutor(2) as pool:
        made = dict(zip(("triton", "kserve"), pool.map(lambda sdk: ClientProcess(sdk, logs / f"{sdk}.log"),
                                                      ("triton", "kserve")), strict=True))  # fmt: skip
    yield made
    for client in made.values():
        client.close()


# --- requests and answers ----------------------------------------------------------------------------------------
def inputs_of(target: Target, binary: bool) -> list[dict[str, Any]]:
    return [{**spec, "binary": binary} for spec in target.model.kind.inputs]


def infer(
    clients: dict[str, ClientProcess], sdk: str, transport: str, target: Target, *, binary: bool = False,
    outputs: list[dict[str, Any]] | None = None, model: str | None = None, **extra: Any,
) -> Any:  # fmt: skip
    """One inference of the model's own request through ``sdk`` over ``transport``; ``extra`` overrides fields."""
    request = {"op": "infer", "transport": transport, "url": target.address(transport), "model": model or target.name,
               "inputs": inputs_of(target, binary), "outputs": outputs,
               "parameters": dict(target.model.kind.params) or None, **extra}  # fmt: skip
    return clients[sdk].call(**request)


def json_outputs(target: Target) -> list[dict[str, Any]]:
    """Every output asked for as JSON (tritonclient asks for binary outputs unless each is named)."""
    return [{"name": name, "binary": False} for name in output_names(target)]


def metadata(target: Target) -> dict[str, Any]:
    return requests.get(f"{target.server.url}/v2/models/{target.name}", timeout=30).json()


_NAMES: dict[tuple[str, str], list[str]] = {}


def output_names(target: Target) -> list[str]:
    """The names the model's outputs must have: the DataFrame's columns, else the names the metadata declares;
    for a model that declares none (no signature), the names a plain JSON request gets."""
    key = (target.backend, target.name)
    if key not in _NAMES:
        kind = target.model.kind
        declared = [t["name"] for t in metadata(target).get("outputs") or []]
        if all(o.name for o in kind.outputs):
            _NAMES[key] = [o.name for o in kind.outputs]  # type: ignore[misc]
        elif declared:
            assert len(declared) == len(kind.outputs), f"metadata declares {declared}: {len(kind.outputs)} outputs"
            _NAMES[key] = declared
        else:
            answer = requests.post(f"{target.server.url}/v2/models/{target.name}/infer", timeout=60,
                                   json={"inputs": kind.inputs, "parameters": dict(kind.params) or None})  # fmt: skip
            assert answer.status_code == 200, answer.text[:500]
            _NAMES[key] = [o["name"] for o in answer.json()["outputs"]]
    return _NAMES[key]


def assert_answer(answer: Any, target: Target, names: list[str] | None = None) -> None:
    """``answer`` is the model's answer to its own request: the expected names in order, datatypes, values."""
    assert not isinstance(answer, ClientError), answer
    kind = target.model.kind
    expected = {name: out for name, out in zip(output_names(target), kind.outputs, strict=True)}
    names = names or list(expected)
    assert [o["name"] for o in answer["outputs"]] == names, answer["outputs"]
    for output in answer["outputs"]:
        want = expected[output["name"]]
        assert output["datatype"] == want.datatype, output
        assert same_values(output["data"], want.data), (output["name"], output["data"], want.data)
        assert math.prod(output["shape"]) == len(want.data), output["shape"]
    assert answer["model_name"] == target.name


def same_values(got: list[Any], want: list[Any]) -> bool:
    return len(got) == len(want) and all(g == w and type(g) is type(w) for g, w in zip(got, want, strict=True))


def tensors(answer: dict[str, Any]) -> list[tuple[str, str, list[int], list[Any]]]:
    """What two answers must share to be the same answer: each output's name, datatype, shape and values."""
    return [(o["name"], o["datatype"], o["shape"], o["data"]) for o in answer["outputs"]]


def good_request_still_works(clients: dict[str, ClientProcess], sdk: str, transport: str, target: Target) -> None:
    assert_answer(infer(clients, sdk, transport, target, outputs=json_outputs(target)), target)


# --- health and metadata -----------------------------------------------------------------------------------------
HEALTH_CASES = [(backend, sdk, transport) for backend in BACKENDS for sdk, transport in CLIENTS]


@pytest.mark.parametrize(("backend", "sdk", "transport"), params_for(HEALTH_CASES, {
    ("mlserver", "kserve", "http"): "the KServe SDK reads is_server_live()/is_server_ready() from the body; "
    + MLSERVER_HEALTH,
}))  # fmt: skip
def test_server_live_ready_and_each_model_ready(
    backend: str, sdk: str, transport: str, targets: dict[tuple[str, str], Target], clients: dict[str, ClientProcess]
) -> None:
    for model in MODELS:
        target = targets[(backend, model)]
        call = {"transport": transport, "url": target.address(transport)}
        assert clients[sdk].call(op="live", **call) is True
        assert clients[sdk].call(op="ready", **call) is True
        assert clients[sdk].call(op="model_ready", model=target.name, **call) is True
        good_request_still_works(clients, sdk, transport, target)


@pytest.mark.parametrize(("backend", "sdk", "transport"), params_for(HEALTH_CASES, {
    ("mlserver", sdk, "grpc"): MLSERVER_GRPC_READY for sdk in ("triton", "kserve")
}))  # fmt: skip
def test_an_unknown_models_readiness_is_false_or_not_found(
    backend: str, sdk: str, transport: str, targets: dict[tuple[str, str], Target], clients: dict[str, ClientProcess]
) -> None:
    target = targets[(backend, "floats")]
    call = {"transport": transport, "url": target.address(transport)}
    unknown = clients[sdk].call(op="model_ready", model="no-such-model", **call)
    assert unknown is False or (isinstance(unknown, ClientError) and unknown.status in ("404", "NOT_FOUND")), unknown
    good_request_still_works(clients, sdk, transport, target)


@pytest.mark.parametrize("backend", params_for([("mlflow",), ("mlserver",)], {("mlserver",): MLSERVER_HEALTH}))
def test_health_routes_answer_json_bodies(backend: str, targets: dict[tuple[str, str], Target]) -> None:
    url = targets[(backend, "floats")].server.url
    live, ready = requests.get(f"{url}/v2/health/live", timeout=30), requests.get(f"{url}/v2/health/ready", timeout=30)
    assert (live.status_code, live.json()) == (200, {"live": True})
    assert (ready.status_code, ready.json()) == (200, {"ready": True})


@pytest.mark.parametrize(("backend", "transport"), params_for(
    [(b, t) for b in BACKENDS for t in ("http", "grpc")],
    {("mlserver", "http"): MLSERVER_EXTENSIONS, ("mlserver", "grpc"): MLSERVER_EXTENSIONS},
))  # fmt: skip
def test_server_metadata_names_the_binary_tensor_extension(
    backend: str, transport: str, targets: dict[tuple[str, str], Target], clients: dict[str, ClientProcess]
) -> None:
    target = targets[(backend, "floats")]
    answer = clients["triton"].call(op="server_metadata", transport=transport, url=target.address(transport))
    assert not isinstance(answer, ClientError), answer
    assert answer["name"] and answer["version"]
    assert "binary_tensor_data" in answer.get("extensions", []), answer  # gRPC's JSON form omits an empty list


META_CASES = [(backend, model, transport) for backend in BACKENDS for model in MODELS for transport in ("http", "grpc")]


@pytest.mark.parametrize(("backend", "model", "transport"), params_for(META_CASES, {}))
def test_model_metadata_lists_what_infer_takes_and_returns(
    backend: str, model: str, transport: str, targets: dict[tuple[str, str], Target],
    clients: dict[str, ClientProcess],
) -> None:  # fmt: skip
    target = targets[(backend, model)]
    described = clients["triton"].call(op="model_metadata", transport=transport, url=target.address(transport),
                                       model=target.name)  # fmt: skip
    assert not isinstance(described, ClientError), described
    assert described["name"] == target.name
    answer = infer(clients, "triton", transport, target)
    assert not isinstance(answer, ClientError), answer
    declared = {t["name"]: t for t in described.get("outputs") or []}
    if target.model.kind.signature is None and not declared:  # nothing is known of it before it answers
        assert [o["name"] for o in answer["outputs"]] == ["output-0"], "a lone output is output-0"
        return
    for output in answer["outputs"]:
        assert output["name"] in declared, (output["name"], list(declared))
        tensor = declared[output["name"]]
        assert tensor["datatype"] == output["datatype"], (tensor, output["datatype"])
        assert fits(output["shape"], tensor["shape"]), (output["shape"], tensor["shape"])
    if target.model.kind.signature is not None:
        inputs = {t["name"]: t for t in described.get("inputs") or []}
        for sent in target.model.kind.inputs:
            assert sent["name"] in inputs, (sent["name"], list(inputs))
            assert inputs[sent["name"]]["datatype"] == sent["datatype"]
            assert fits(sent["shape"], inputs[sent["name"]]["shape"]) or fits(
                [*sent["shape"], 1], inputs[sent["name"]]["shape"]
            )


def fits(shape: list[int], declared: list[int]) -> bool:
    return len(shape) == len(declared) and all(d == -1 or d == s for s, d in zip(shape, declared, strict=True))


# --- answers: JSON, binary, gRPC, compressed ---------------------------------------------------------------------
VALUE_CASES = [(backend, model) for backend in BACKENDS for model in MODELS]
SDK_CASES = [(backend, model, sdk) for backend, model in VALUE_CASES for sdk in ("triton", "kserve")]


@pytest.mark.parametrize(("backend", "model", "sdk"), params_for(SDK_CASES, {}))
def test_a_json_request_gets_the_models_answer(
    backend: str, model: str, sdk: str, targets: dict[tuple[str, str], Target], clients: dict[str, ClientProcess]
) -> None:
    target = targets[(backend, model)]
    answer = infer(clients, sdk, "http", target, outputs=json_outputs(target), id=f"{sdk}-{model}-7")
    assert_answer(answer, target)
    assert answer["id"] == f"{sdk}-{model}-7"
    assert not any(o["binary"] for o in answer["outputs"]), "outputs asked for as JSON"


@pytest.mark.parametrize(("backend", "model", "transport"), params_for(
    [(b, m, t) for b, m in VALUE_CASES for t in ("http", "grpc")],
    {("mlserver", m, "http"): MLSERVER_BINARY for m in MODELS},
))  # fmt: skip
def test_tritonclient_defaults_get_the_json_answer(
    backend: str, model: str, transport: str, targets: dict[tuple[str, str], Target],
    clients: dict[str, ClientProcess],
) -> None:  # fmt: skip
    """tritonclient as users call it: binary inputs (its default), no outputs named (it then asks for every
    output in binary). Over gRPC it always sends raw tensors. Same tensors as the JSON request over REST."""
    target = targets[(backend, model)]
    reference = infer(clients, "triton", "http", target, outputs=json_outputs(target))
    assert_answer(reference, target)
    answer = infer(clients, "triton", transport, target, binary=True)
    assert_answer(answer, target)
    assert tensors(answer) == tensors(reference)
    if transport == "http":
        assert all(o["binary"] for o in answer["outputs"]), "binary_data_output: every output in binary"


@pytest.mark.parametrize(("backend", "model", "transport"), params_for(
    [(b, m, t) for b, m in VALUE_CASES for t in ("http", "grpc")],
    {("mlserver", m, "http"): MLSERVER_BINARY for m in MODELS},
))  # fmt: skip
def test_kserve_raw_tensors_get_the_json_answer(
    backend: str, model: str, transport: str, targets: dict[tuple[str, str], Target],
    clients: dict[str, ClientProcess],
) -> None:  # fmt: skip
    """The KServe SDK's raw tensors (set_data_from_numpy(binary_data=True)): over REST the binary extension, with
    binary outputs asked for by the request's binary_data_output; over gRPC raw_input_contents."""
    target = targets[(backend, model)]
    reference = infer(clients, "kserve", "http", target, outputs=json_outputs(target))
    assert_answer(reference, target)
    extra = {"parameters": {**target.model.kind.params, "binary_data_output": True}} if transport == "http" else {}
    answer = infer(clients, "kserve", transport, target, binary=True, **extra)
    assert_answer(answer, target)
    assert tensors(answer) == tensors(reference)
    if transport == "http":
        assert all(o["binary"] for o in answer["outputs"]), "binary_data_output: every output in binary"


@pytest.mark.parametrize(("backend", "model", "algorithm"), params_for(
    [(b, m, a) for b, m in VALUE_CASES for a in ("gzip", "deflate")],
    {("mlserver", m, "deflate"): MLSERVER_DEFLATE for m in MODELS},
))  # fmt: skip
def test_compressed_bodies_get_the_models_answer(
    backend: str, model: str, algorithm: str, targets: dict[tuple[str, str], Target],
    clients: dict[str, ClientProcess],
) -> None:  # fmt: skip
    """tritonclient's request_compression_algorithm (Content-Encoding) and response_compression_algorithm
    (Accept-Encoding), JSON tensors."""
    target = targets[(backend, model)]
    answer = infer(clients, "triton", "http", target, outputs=json_outputs(target), request_compression=algorithm,
                   response_compression=algorithm)  # fmt: skip
    assert_answer(answer, target)
    good_request_still_works(clients, "triton", "http", target)


@pytest.mark.parametrize("backend", params_for([("mlflow",), ("mlserver",)], {("mlserver",): MLSERVER_GRPC_DOUBLE}))
def test_a_float_parameter_reaches_the_model_over_grpc(
    backend: str, targets: dict[tuple[str, str], Target], clients: dict[str, ClientProcess]
) -> None:
    """tritonclient sends a float parameter as Triton's double_param (the KServe SDK cannot send one at all)."""
    target = targets[(backend, "params")]
    answer = infer(clients, "triton", "grpc", target, parameters={"scale": 0.5})
    assert not isinstance(answer, ClientError), answer
    assert answer["outputs"][0]["data"] == [1.0, 0.25, 5.5]  # x * 0.5 + 0.5


def test_mlserver_refuses_a_float_parameter_it_cannot_read(
    targets: dict[tuple[str, str], Target], clients: dict[str, ClientProcess]
) -> None:
    """Where MLServer loses the value (above), our runtime says so instead of running the model without it."""
    target = targets[("mlserver", "params")]
    answer = infer(clients, "triton", "grpc", target, parameters={"scale": 0.5})
    assert isinstance(answer, ClientError) and answer.status == "INVALID_ARGUMENT", answer
    assert "parameter 'scale' has no value MLServer can read" in answer.message
    good_request_still_works(clients, "triton", "grpc", target)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_large_answer_is_gzipped_when_the_client_accepts_it(
    backend: str, targets: dict[tuple[str, str], Target]
) -> None:
    target = targets[(backend, "floats")]
    rows = 3000
    body = {"inputs": [{"name": c, "datatype": "FP64", "shape": [rows], "data": [float(i) for i in range(rows)]}
                       for c in "abc"]}  # fmt: skip
    answer = requests.post(f"{target.server.url}/v2/models/floats/infer", json=body,
                           headers={"Accept-Encoding": "gzip"}, timeout=60)  # fmt: skip
    assert answer.status_code == 200, answer.text[:500]
    assert answer.headers.get("content-encoding") == "gzip"
    assert answer.json()["outputs"][0]["data"] == [6.0 * i for i in range(rows)]  # a + 2b + 3c


# --- requested outputs -------------------------------------------------------------------------------------------
OUTPUT_CASES = [(b, m, sdk, t) for b, m in VALUE_CASES for sdk, t in CLIENTS]


@pytest.mark.parametrize(("backend", "model", "sdk", "transport"), params_for(OUTPUT_CASES, {}))
def test_requested_outputs_choose_and_order_the_answer(
    backend: str, model: str, sdk: str, transport: str, targets: dict[tuple[str, str], Target],
    clients: dict[str, ClientProcess],
) -> None:  # fmt: skip
    target = targets[(backend, model)]
    names = output_names(target)
    chosen = [names[-1], names[0]] if len(names) > 1 else names  # the last and the first: a subset, reordered
    answer = infer(clients, sdk, transport, target, outputs=[{"name": n, "binary": False} for n in chosen])
    assert_answer(answer, target, names=chosen)


# --- errors, and the next request on the same client -------------------------------------------------------------
def _wrong_datatype(target: Target) -> dict[str, Any]:
    inputs = inputs_of(target, False)
    inputs[0] = {**inputs[0], "datatype": "BYTES", "data": ["text"] * math.prod(inputs[0]["shape"])}
    return {"inputs": inputs}


def _wrong_shape(target: Target) -> dict[str, Any]:
    return {"inputs": [{"name": "input-0", "datatype": "FP32", "shape": [2, 3], "data": [1.0] * 6, "binary": False}]}


def _missing_input(target: Target) -> dict[str, Any]:
    return {"inputs": inputs_of(target, False)[:-1]}


def _bad_parameter(target: Target) -> dict[str, Any]:
    return {"parameters": {"scale": "big"}}


def _unknown_output(target: Target) -> dict[str, Any]:
    return {"outputs": [{"name": "no-such-output", "binary": False}]}


def _unknown_model(target: Target) -> dict[str, Any]:
    return {"model": "no-such-model"}


def _model_raises(target: Target) -> dict[str, Any]:
    return {"parameters": {"fail": True}}


def _over_the_limit(target: Target) -> dict[str, Any]:
    rows = LIMIT // 8 + 1000  # binary FP64: just over the limit
    return {"inputs": [{"name": "x", "datatype": "FP64", "shape": [rows], "data": [1.0] * rows, "binary": True}]}


# case -> (model, the request's changes, HTTP status); gRPC: the status's gRPC code, no body limit case
ERRORS = {
    "wrong-datatype": ("floats", _wrong_datatype, 400),
    "wrong-shape": ("tensor32", _wrong_shape, 400),
    "missing-input": ("floats", _missing_input, 400),
    "bad-parameter": ("params", _bad_parameter, 400),
    "unknown-output": ("floats", _unknown_output, 400),
    "unknown-model": ("floats", _unknown_model, 404),
    "model-raises": ("params", _model_raises, 500),
    "over-the-limit": ("params", _over_the_limit, 413),
}
ERROR_CASES = [(b, case, sdk, t) for b in BACKENDS for case in ERRORS for sdk, t in CLIENTS
               if not (case == "over-the-limit" and t == "grpc")]  # fmt: skip
MLSERVER_ERRORS: dict[tuple[Any, ...], str] = {
    **{("mlserver", "over-the-limit", sdk, "http"): MLSERVER_NO_LIMIT for sdk in ("triton", "kserve")},
}


@pytest.mark.parametrize(("backend", "case", "sdk", "transport"), params_for(ERROR_CASES, MLSERVER_ERRORS))
def test_an_error_is_answered_and_the_same_client_goes_on(
    backend: str, case: str, sdk: str, transport: str, targets: dict[tuple[str, str], Target],
    clients: dict[str, ClientProcess],
) -> None:  # fmt: skip
    model, change, status = ERRORS[case]
    target = targets[(backend, model)]
    for _ in range(2):  # twice: the second error also comes through the same client
        answer = infer(clients, sdk, transport, target, **change(target))
        assert isinstance(answer, ClientError), answer
        assert answer.status == (str(status) if transport == "http" else GRPC_STATUS[status]), answer
        assert answer.parsed, f"the SDK could not read the error body: {answer.message[:300]}"
        assert "Traceback" not in answer.message and 'File "/' not in answer.message, answer.message
        good_request_still_works(clients, sdk, transport, target)


RAW_ERROR_CASES = [(b, case) for b in BACKENDS for case in [*ERRORS, "malformed-json"]]


@pytest.mark.parametrize(("backend", "case"), params_for(RAW_ERROR_CASES, {
    ("mlserver", "over-the-limit"): MLSERVER_NO_LIMIT,
    ("mlserver", "malformed-json"): MLSERVER_VALIDATION,
}))  # fmt: skip
def test_an_error_body_is_one_line_of_json_and_the_connection_stays(
    backend: str, case: str, targets: dict[tuple[str, str], Target]
) -> None:
    """The raw HTTP answer: ``{"error": "<one line>"}`` as application/json, no traceback, no server path, no
    request header; then the next request on the same keep-alive connection."""
    if case == "malformed-json":
        target, status, name = targets[(backend, "floats")], 400, "floats"
        body, headers = b'{"inputs": [{"name": "a", "datatype": "FP64", "shape": [1], "data": [1.0', {}
    else:
        model, change, status = ERRORS[case]
        target = targets[(backend, model)]
        request = {"inputs": inputs_of(target, False), "parameters": dict(target.model.kind.params) or None,
                   **change(target)}  # fmt: skip
        body, headers = v2_body(request)
        name = request.get("model") or target.name
    with requests.Session() as session:
        for _ in range(2):
            answer = session.post(f"{target.server.url}/v2/models/{name}/infer", data=body,
                                  headers={**headers, PROBE: SECRET}, timeout=60)  # fmt: skip
            assert answer.status_code == status, answer.text[:500]
            assert answer.headers["content-type"].startswith("application/json"), answer.headers
            error = answer.json()
            assert set(error) == {"error"} and isinstance(error["error"], str), error
            assert "\n" not in error["error"] and error["error"].strip(), error
            for leak in ("Traceback", "site-packages", SECRET, PROBE):
                assert leak not in answer.text, (leak, answer.text[:500])
            good = session.post(f"{target.server.url}/v2/models/{target.name}/infer", timeout=60,
                                json={"inputs": target.model.kind.inputs,
                                      "parameters": dict(target.model.kind.params) or None})  # fmt: skip
            assert good.status_code == 200, good.text[:500]


def v2_body(request: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """A V2 REST body for ``request`` (as support/v2client.py describes it): JSON, or with binary tensors after
    the JSON header (Triton's binary tensor data extension) when an input is ``binary``."""
    header: dict[str, Any] = {"inputs": []}
    raw = []
    for spec in request["inputs"]:
        tensor = {k: spec[k] for k in ("name", "datatype", "shape")}
        if spec.get("binary"):
            import numpy as np

            data = np.asarray(spec["data"], dtype={"FP64": np.float64, "FP32": np.float32}[spec["datatype"]])
            raw.append(data.tobytes())
            tensor["parameters"] = {"binary_data_size": len(raw[-1])}
        else:
            tensor["data"] = spec["data"]
        header["inputs"].append(tensor)
    if request.get("parameters"):
        header["parameters"] = request["parameters"]
    if request.get("outputs"):
        header["outputs"] = [{"name": o["name"]} for o in request["outputs"]]
    text = json.dumps(header).encode()
    if not raw:
        return text, {"content-type": "application/json"}
    return text + b"".join(raw), {"content-type": "application/octet-stream",
                                  "inference-header-content-length": str(len(text))}  # fmt: skip


@pytest.mark.parametrize("backend", params_for([("mlflow",), ("mlserver",)], {("mlserver",): MLSERVER_BOMB}))
def test_a_zip_bomb_gets_413_and_the_server_goes_on(backend: str, targets: dict[tuple[str, str], Target]) -> None:
    """256 MiB of JSON whitespace gzipped to a quarter of a megabyte: under the limit as sent, far over it
    decompressed. The server must stop reading at the limit, not decompress it all."""
    target = targets[(backend, "floats")]
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: the gzip format
    chunk = b" " * (1 << 20)
    bomb = packer.compress(b'{"inputs": [') + b"".join(packer.compress(chunk) for _ in range(256)) + packer.flush()
    assert len(bomb) < LIMIT
    with requests.Session() as session:
        answer = session.post(f"{target.server.url}/v2/models/floats/infer", data=bomb, timeout=120,
                              headers={"content-type": "application/json", "content-encoding": "gzip"})  # fmt: skip
        assert answer.status_code == 413, answer.text[:500]
        assert set(answer.json()) == {"error"}
        good = session.post(f"{target.server.url}/v2/models/floats/infer", json={"inputs": target.model.kind.inputs},
                            timeout=60)  # fmt: skip
        assert good.status_code == 200, good.text[:500]


# --- MLServer 1.6.1 (models of MLflow 2.10-2.18): the same runtime, proven on that row too -----------------------
@pytest.fixture(scope="session")
def legacy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """A model logged with MLflow 2.16 (MLServer 1.6.1's row), served by MLServer with its own defaults (one
    inference worker: our runtime's errors cross the process boundary pickled; debug on: the runtime alone keeps
    tracebacks out of the answers)."""
    model = save_legacy()
    work = tmp_path_factory.mktemp("v2-legacy")
    _init(model, work, CACHE / "v2-env-cache", verify=True)
    report = json.loads((work / "envs" / model.served / "report.json").read_text())
    assert report["packages"]["mlserver"] == "1.6.1", report["packages"].get("mlserver")
    env = ModelEnv(model.served, work / "envs" / model.served / "venv" / "bin" / "python",
                   work / "models" / model.served)  # as in a pod: model-settings.json at the top  # fmt: skip
    with mlserver(env, work / "mlserver.log", MLSERVER_PARALLEL_WORKERS="1") as server:
        yield Target("mlserver", model, server)


@pytest.mark.parametrize(("sdk", "transport"), CLIENTS)
def test_mlserver_161_answers_and_chooses_outputs(
    sdk: str, transport: str, legacy: Target, clients: dict[str, ClientProcess]
) -> None:
    assert_answer(infer(clients, sdk, transport, legacy, outputs=json_outputs(legacy)), legacy)
    chosen = [{"name": "shout", "binary": False}]
    assert_answer(infer(clients, sdk, transport, legacy, outputs=chosen), legacy, names=["shout"])


LEGACY_ERRORS = {
    "wrong-datatype": (_wrong_datatype, 400),
    "unknown-output": (_unknown_output, 400),
    "model-raises": (_model_raises, 500),
}


@pytest.mark.parametrize(("case", "sdk", "transport"), [(c, s, t) for c in LEGACY_ERRORS for s, t in CLIENTS])
def test_mlserver_161_errors_and_the_same_client_goes_on(
    case: str, sdk: str, transport: str, legacy: Target, clients: dict[str, ClientProcess]
) -> None:
    change, status = LEGACY_ERRORS[case]
    for _ in range(2):
        answer = infer(clients, sdk, transport, legacy, **change(legacy))
        assert isinstance(answer, ClientError), answer
        assert answer.status == (str(status) if transport == "http" else GRPC_STATUS[status]), answer
        assert answer.parsed and "Traceback" not in answer.message, answer.message[:500]
        good_request_still_works(clients, sdk, transport, legacy)


@pytest.mark.parametrize("case", list(LEGACY_ERRORS))
def test_mlserver_161_error_bodies_are_one_line_of_json(case: str, legacy: Target) -> None:
    change, status = LEGACY_ERRORS[case]
    body, headers = v2_body({"inputs": inputs_of(legacy, False), **change(legacy)})
    with requests.Session() as session:
        for _ in range(2):
            answer = session.post(f"{legacy.server.url}/v2/models/legacy/infer", data=body,
                                  headers={**headers, PROBE: SECRET}, timeout=60)  # fmt: skip
            assert answer.status_code == status, answer.text[:500]
            error = answer.json()
            assert set(error) == {"error"} and "\n" not in error["error"], error
            assert SECRET not in answer.text and "Traceback" not in answer.text, answer.text[:500]
            good = session.post(f"{legacy.server.url}/v2/models/legacy/infer", timeout=60,
                                json={"inputs": legacy.model.kind.inputs})  # fmt: skip
            assert good.status_code == 200, good.text[:500]
