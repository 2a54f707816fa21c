"""The mlflow backend's transports, in process, around its one internal model (tensors.py): the REST binary
tensor data extension both ways (raw little-endian tensors after the JSON, BYTES length-prefixed; requests built
the way tritonclient builds them), gzip/deflate bodies and their limit, requested outputs, the gRPC messages built
at run time from a descriptor in code (with this venv's protobuf; other protobufs: test_v2_grpc.py), gRPC <-> the
internal model giving REST's answers, one-line error texts, and the metrics' text format and worker sums."""

from __future__ import annotations

import gzip
import json
import multiprocessing
import struct
import zlib
from typing import Any

import numpy as np
import pytest
from mlflow_kserve_server import compression, metrics
from mlflow_kserve_server.dataplane import chosen_outputs
from mlflow_kserve_server.errors import V2Error, one_line
from mlflow_kserve_server.grpc_codec import decode_request as grpc_request
from mlflow_kserve_server.grpc_codec import encode_metadata
from mlflow_kserve_server.grpc_codec import encode_response as grpc_response
from mlflow_kserve_server.grpc_proto import file_descriptor_proto, messages
from mlflow_kserve_server.raw import from_raw, to_raw
from mlflow_kserve_server.rest_codec import decode_request, encode_response
from mlflow_kserve_server.tensors import InferResponse, RequestedOutput, Tensor


def binary_body(inputs: list[tuple[str, str, np.ndarray]], **extra: Any) -> tuple[bytes, str]:
    """A request as tritonclient.http sends binary inputs: the JSON, then each input's bytes; and the
    Inference-Header-Content-Length value."""
    tails, described = [], []
    for name, datatype, array in inputs:
        raw = to_raw(array.reshape(-1), datatype)
        tails.append(raw)
        described.append({"name": name, "shape": list(array.shape), "datatype": datatype,
                          "parameters": {"binary_data_size": len(raw)}})  # fmt: skip
    head = json.dumps({"inputs": described, **extra}).encode()
    return head + b"".join(tails), str(len(head))


def split_response(content: bytes, json_length: int | None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """A response as tritonclient reads it: the JSON, and each binary output as an array."""
    head = json.loads(content[:json_length] if json_length else content)
    arrays, offset = {}, json_length or len(content)
    for output in head["outputs"]:
        size = output.get("parameters", {}).get("binary_data_size")
        if size is not None:
            arrays[output["name"]] = from_raw(content[offset : offset + size], output["datatype"], output["shape"],
                                              output["name"]).reshape(output["shape"])  # fmt: skip
            offset += size
    assert offset == len(content), "nothing after the last binary output"
    return head, arrays


# --- raw tensor bytes -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("datatype", "values"),
    [("BOOL", [True, False, True]), ("INT8", [-128, 0, 127]), ("UINT16", [0, 1, 65535]),
     ("INT64", [-(2**63), 0, 2**63 - 1]), ("UINT64", [0, 1, 2**64 - 1]), ("FP16", [0.5, -1.5, 2.0]),
     ("FP32", [0.25, 1e30, -3.0]), ("FP64", [0.1, float("inf"), -0.0])],
)  # fmt: skip
def test_raw_tensor_bytes_round_trip_little_endian(datatype: str, values: list[Any]) -> None:
    from mlflow_kserve_server.datatypes import NUMPY_DTYPES

    array = np.array(values, dtype=NUMPY_DTYPES[datatype])
    raw = to_raw(array, datatype)
    assert raw == array.astype(NUMPY_DTYPES[datatype].newbyteorder("<")).tobytes()
    assert from_raw(raw, datatype, [3], "t").tolist() == array.tolist()


def test_bytes_elements_are_length_prefixed() -> None:
    data = np.array(["a", "bé", b"\x00\xff", None], dtype=object)
    raw = to_raw(data, "BYTES")
    assert raw == b"\x01\x00\x00\x00a" + struct.pack("<I", 3) + "bé".encode() + b"\x02\x00\x00\x00\x00\xff" + bytes(4)
    assert from_raw(raw, "BYTES", [2, 2], "t").tolist() == [b"a", "bé".encode(), b"\x00\xff", b""]


@pytest.mark.parametrize(
    ("raw", "datatype", "shape", "message"),
    [
        (bytes(12), "FP64", [2], "12 bytes of binary data, but shape [2] of FP64 needs 16"),
        (b"\x02", "BOOL", [1], "bytes of 0 or 1"),
        (b"\x05\x00\x00\x00ab", "BYTES", [1], "runs past the end"),
        (b"\x01\x00", "BYTES", [1], "inside an element's 4-byte length"),
        (b"\x01\x00\x00\x00a", "BYTES", [2], "holds 1 BYTES elements, but the shape needs 2"),
    ],
)
def test_raw_data_of_the_wrong_size_is_a_400(raw: bytes, datatype: str, shape: list[int], message: str) -> None:
    with pytest.raises(V2Error) as error:
        from_raw(raw, datatype, shape, "input 't'")
    assert error.value.status == 400 and message in error.value.message


# --- REST: the binary tensor data extension ---------------------------------------------------------------------


def test_binary_inputs_after_the_json_decode_like_json_ones() -> None:
    x, text = np.array([[1.5, 2.5], [3.5, 4.5]], dtype=np.float32), np.array(["a", "é"], dtype=object)
    body, header = binary_body([("x", "FP32", x), ("text", "BYTES", text)], parameters={"binary_data_output": True})
    request = decode_request(body, header)
    assert [t.name for t in request.inputs] == ["x", "text"] and request.binary_outputs
    assert request.inputs[0].data.tolist() == [1.5, 2.5, 3.5, 4.5] and request.inputs[0].shape == [2, 2]
    assert request.inputs[0].parameters == {}, "binary_data_size is the transport's, not the model's"
    assert request.inputs[1].strings() == ["a", "é"]
    mixed = json.dumps({"inputs": [{"name": "y", "shape": [1], "datatype": "INT32", "data": [7]}]}).encode()
    assert decode_request(mixed, str(len(mixed))).inputs[0].data.tolist() == [7], "JSON data with the header"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda body, header: (body + b"x", header), "add up to 8"),
        (lambda body, header: (body[:-1], header), "runs past the end of the body"),
        (lambda body, header: (body, "abc"), "is not the length of the JSON"),
        (lambda body, header: (body, str(len(body) + 1)), "is not the length of the JSON"),
        (lambda body, header: (body, str(int(header) - 1)), "not valid JSON"),
        (lambda body, header: (body, None), "needs the Inference-Header-Content-Length header"),
    ],
)
def test_a_binary_body_that_does_not_add_up_is_a_400(change: Any, message: str) -> None:
    body, header = binary_body([("x", "FP64", np.array([1.0]))])
    with pytest.raises(V2Error) as error:
        decode_request(*change(body, header))
    assert error.value.status == 400 and message in error.value.message


def _response() -> InferResponse:
    return InferResponse("m", "2", "id-1", [
        Tensor("y", "FP64", [3], np.array([1.5, np.nan, 3.0]), {"content_type": "np"}),
        Tensor("s", "BYTES", [3, 1], np.array(["a", None, "é"], dtype=object), {"content_type": "str"}),
    ], {"content_type": "dict"})  # fmt: skip


def test_outputs_as_binary_when_the_request_or_each_output_says_so() -> None:
    all_binary = decode_request(*binary_body([("x", "FP64", np.array([1.0]))], parameters={"binary_data_output": True}))
    content, json_length = encode_response(_response(), all_binary)
    head, arrays = split_response(content, json_length)
    assert [o["parameters"] for o in head["outputs"]] == [
        {"content_type": "np", "binary_data_size": 24}, {"content_type": "str", "binary_data_size": 15}
    ]  # fmt: skip
    assert "data" not in head["outputs"][0] and np.isnan(arrays["y"][1]), "binary keeps NaN (JSON writes null)"
    assert arrays["s"].reshape(-1).tolist() == [b"a", b"", "é".encode()]
    one = decode_request(json.dumps({"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [1]}],
                                     "outputs": [{"name": "s", "parameters": {"binary_data": True}},
                                                 {"name": "y"}]}).encode())  # fmt: skip
    response = _response()
    response.outputs = chosen_outputs(response.outputs, one)
    head, arrays = split_response(*encode_response(response, one))
    assert [o["name"] for o in head["outputs"]] == ["s", "y"], "the requested order"
    assert head["outputs"][1]["data"] == [1.5, None, 3.0] and set(arrays) == {"s"}


def test_json_response_has_no_header_length() -> None:
    content, json_length = encode_response(_response(), None)
    assert json_length is None
    answer = json.loads(content)
    assert answer["model_version"] == "2" and answer["outputs"][1]["data"] == ["a", None, "é"]


def test_requested_outputs_choose_and_order_and_an_unknown_one_is_a_400() -> None:
    request = decode_request(json.dumps({"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [1]}],
                                         "outputs": [{"name": "s"}, {"name": "nope"}]}).encode())  # fmt: skip
    with pytest.raises(V2Error) as error:
        chosen_outputs(_response().outputs, request)
    assert error.value.status == 400 and "unknown output 'nope': the model's outputs are y, s" in error.value.message
    request.outputs = [RequestedOutput("s")]
    assert [o.name for o in chosen_outputs(_response().outputs, request)] == ["s"]
    request.outputs = None
    assert [o.name for o in chosen_outputs(_response().outputs, request)] == ["y", "s"]


def test_bytes_that_are_not_text_need_a_binary_output() -> None:
    response = InferResponse("m", None, "1", [Tensor("b", "BYTES", [1], np.array([b"\xff"], dtype=object))])
    with pytest.raises(V2Error, match="ask for it as binary data"):
        encode_response(response, None)


# --- compression ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [("gzip", gzip.compress), ("deflate", zlib.compress), ("deflate", lambda b: zlib.compress(b, wbits=-15)),
     ("GZIP", gzip.compress), (None, lambda b: b), ("identity", lambda b: b)],
)  # fmt: skip
def test_request_bodies_inflate_by_their_content_encoding(encoding: str | None, compress: Any) -> None:
    body = b'{"inputs": []}' * 100
    assert compression.decode_body(compress(body), encoding, 10_000) == body


def test_the_limit_applies_to_the_inflated_size_a_zip_bomb_is_a_413() -> None:
    bomb = gzip.compress(bytes(50_000_000))
    assert len(bomb) < 100_000
    with pytest.raises(V2Error) as error:
        compression.decode_body(bomb, "gzip", 1_000_000)
    assert error.value.status == 413 and "over 1000000 bytes (decompressed)" in error.value.message
    assert compression.decode_body(gzip.compress(bytes(1_000_000)), "gzip", 1_000_000) == bytes(1_000_000)


@pytest.mark.parametrize(
    ("body", "encoding", "status", "message"),
    [(b"not gzip", "gzip", 400, "not valid gzip data"),
     (gzip.compress(b"x", mtime=0)[:-4], "gzip", 400, "not one whole"),
     (gzip.compress(b"x", mtime=0) * 2, "gzip", 400, "not one whole"), (b"x", "br", 415, "'br' is not supported")],
    ids=["not-gzip", "truncated", "two-members", "brotli"],  # stable: xdist's workers must collect the same ids
)  # fmt: skip
def test_a_body_that_does_not_inflate_is_refused(body: bytes, encoding: str, status: int, message: str) -> None:
    with pytest.raises(V2Error) as error:
        compression.decode_body(body, encoding, 1000)
    assert error.value.status == status and message in error.value.message


@pytest.mark.parametrize(
    ("header", "chosen"),
    [("gzip", "gzip"), ("deflate", "deflate"), ("gzip, deflate", "gzip"), ("gzip;q=0, deflate", "deflate"),
     ("*", "gzip"), ("identity", None), ("br", None), (None, None), ("gzip;q=0.5", "gzip"), ("gzip;q=x", None)],
)  # fmt: skip
def test_the_response_encoding_is_what_accept_encoding_allows(header: str | None, chosen: str | None) -> None:
    assert compression.accepted(header) == chosen


def test_compressed_responses_inflate_as_tritonclient_inflates_them() -> None:
    body = b"x" * 1000
    assert gzip.decompress(compression.encode_body(body, "gzip")) == body
    assert zlib.decompress(compression.encode_body(body, "deflate")) == body


# --- gRPC -------------------------------------------------------------------------------------------------------


def test_the_descriptor_in_code_has_the_services_messages_and_triton_numbers() -> None:
    proto = file_descriptor_proto()
    assert proto.package == "inference" and proto.syntax == "proto3"
    names = [m.name for m in proto.message_type]
    assert {"ModelInferRequest", "ModelInferResponse", "ModelMetadataResponse", "InferParameter"} <= set(names)
    request = next(m for m in proto.message_type if m.name == "ModelInferRequest")
    assert {f.name: f.number for f in request.field} == {"model_name": 1, "model_version": 2, "id": 3,
        "parameters": 4, "inputs": 5, "outputs": 6, "raw_input_contents": 7}  # fmt: skip
    parameter = next(m for m in proto.message_type if m.name == "InferParameter")
    assert [(f.name, f.number) for f in parameter.field][-2:] == [("double_param", 4), ("uint64_param", 5)]


def _grpc_infer_request(raw: bool) -> Any:
    m = messages()
    message = m.ModelInferRequest(model_name="m", id="req-7")
    message.parameters["scale"].double_param = 2.0
    message.parameters["kind"].string_param = "dict"
    x = message.inputs.add(name="x", datatype="FP32", shape=[2, 2])
    text = message.inputs.add(name="text", datatype="BYTES", shape=[2])
    if raw:
        message.raw_input_contents.append(np.array([1, 2, 3, 4], dtype="<f4").tobytes())
        message.raw_input_contents.append(to_raw(np.array(["a", "é"], dtype=object), "BYTES"))
    else:
        x.contents.fp32_contents.extend([1, 2, 3, 4])
        text.contents.bytes_contents.extend([b"a", "é".encode()])
    message.outputs.add(name="s")
    return m.ModelInferRequest.FromString(message.SerializeToString())  # as it arrives


@pytest.mark.parametrize("raw", [True, False], ids=["raw_input_contents", "contents"])
def test_a_grpc_request_is_the_same_internal_request_as_rest(raw: bool) -> None:
    request, raw_outputs = grpc_request(_grpc_infer_request(raw))
    rest = decode_request(json.dumps({
        "id": "req-7", "parameters": {"scale": 2.0, "kind": "dict"}, "outputs": [{"name": "s"}],
        "inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3, 4]},
                   {"name": "text", "shape": [2], "datatype": "BYTES", "data": ["a", "é"]}],
    }).encode())  # fmt: skip
    assert raw_outputs is raw
    assert (request.id, request.model_params(), [o.name for o in request.outputs]) == (
        rest.id, rest.model_params(), ["s"]
    )  # fmt: skip
    for mine, theirs in zip(request.inputs, rest.inputs, strict=True):
        assert (mine.name, mine.datatype, mine.shape) == (theirs.name, theirs.datatype, theirs.shape)
        assert mine.data.dtype == theirs.data.dtype
        assert (mine.strings() if mine.datatype == "BYTES" else mine.data.tolist()) == (
            theirs.strings() if theirs.datatype == "BYTES" else theirs.data.tolist()
        )


@pytest.mark.parametrize("raw", [True, False], ids=["raw_output_contents", "contents"])
def test_a_grpc_response_carries_what_the_rest_one_does(raw: bool) -> None:
    m = messages()
    message = m.ModelInferResponse.FromString(grpc_response(_response(), raw).SerializeToString())
    assert (message.model_name, message.model_version, message.id) == ("m", "2", "id-1")
    assert message.parameters["content_type"].string_param == "dict"
    assert [(o.name, o.datatype, list(o.shape)) for o in message.outputs] == [
        ("y", "FP64", [3]),
        ("s", "BYTES", [3, 1]),
    ]
    if raw:
        y = from_raw(message.raw_output_contents[0], "FP64", [3], "y")
        s = from_raw(message.raw_output_contents[1], "BYTES", [3, 1], "s").tolist()
    else:
        assert not message.raw_output_contents
        y, s = np.array(message.outputs[0].contents.fp64_contents), list(message.outputs[1].contents.bytes_contents)
    assert y[0] == 1.5 and np.isnan(y[1]) and s == [b"a", b"", "é".encode()]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.raw_input_contents.pop(), "raw_input_contents has 1 entries for 2 inputs"),
        (lambda r: r.inputs[0].contents.fp32_contents.append(1.0), "has both contents and raw_input_contents"),
        (lambda r: setattr(r.inputs[0], "datatype", "FP99"), "unknown datatype 'FP99'"),
        (lambda r: r.raw_input_contents.__setitem__(0, b"abc"), "3 bytes of binary data"),
        (lambda r: setattr(r.inputs[1].parameters["binary_data_size"], "string_param", "x"), "binary_data_size must"),
    ],
)
def test_a_bad_grpc_request_is_the_rest_400(change: Any, message: str) -> None:
    request = _grpc_infer_request(raw=True)
    change(request)
    with pytest.raises(V2Error) as error:
        grpc_request(request)
    assert error.value.status == 400 and message in error.value.message


def test_grpc_metadata_lists_the_rest_metadatas_tensors() -> None:
    metadata = {"name": "m", "versions": ["2"], "platform": "", "inputs": [
        {"name": "x", "datatype": "FP64", "shape": [-1, 1]}], "outputs": [
        {"name": "output-0", "datatype": "INT64", "shape": [-1]}]}  # fmt: skip
    message = encode_metadata(metadata)
    assert [(t.name, t.datatype, list(t.shape)) for t in message.inputs] == [("x", "FP64", [-1, 1])]
    assert [(t.name, list(t.shape)) for t in message.outputs] == [("output-0", [-1])]


# --- error texts and metrics ------------------------------------------------------------------------------------


def test_error_texts_are_one_line_without_server_paths() -> None:
    text = "Traceback:\n  File '/opt/venv/lib/python3.11/site-packages/x.py', line 3\nOSError: /mnt/models/model/w.bin"
    assert one_line(text) == "Traceback: File 'x.py', line 3 OSError: w.bin"
    assert one_line("ratio 1/2 of http://host/a/b") == "ratio 1/2 of http://host/a/b"
    assert len(one_line("x" * 5000)) == 1000
    assert V2Error("a\nb").message == "a b"


def test_metrics_text_format_and_worker_sums() -> None:
    first, second = metrics.Registry("iris"), metrics.Registry("iris")
    first.observe_request("rest", 200, 0.003)
    first.observe_request("rest", 200, 0.2)
    first.observe_predict(0.001)
    second.observe_request("grpc", 400, 20.0)
    second.observe_request("rest", 200, 0.06)
    text = metrics.exposition(metrics.merge(first.snapshot(), second.snapshot())).decode()
    assert "# TYPE request_predict_seconds histogram" in text
    assert 'request_predict_seconds_bucket{model_name="iris",le="0.005"} 1' in text
    assert 'inference_requests_total{model_name="iris",protocol="rest",status="200"} 3' in text
    assert 'inference_requests_total{model_name="iris",protocol="grpc",status="400"} 1' in text
    rest = 'inference_request_duration_seconds_bucket{model_name="iris",protocol="rest",status="200",le='
    assert f'{rest}"0.005"}} 1' in text and f'{rest}"0.075"}} 2' in text and f'{rest}"+Inf"}} 3' in text
    assert (
        'inference_request_duration_seconds_bucket{model_name="iris",protocol="grpc",status="400",le="10.0"} 0' in text
    )
    assert 'inference_request_duration_seconds_sum{model_name="iris",protocol="grpc",status="400"} 20' in text
    assert text.endswith("\n") and "\n\n" not in text


def test_a_restarted_worker_keeps_its_predecessors_counts() -> None:
    """The supervisor's sum over real pipes, each answered by a worker's snapshot thread."""
    snapshots = metrics.WorkerSnapshots()

    def worker(registry: metrics.Registry) -> Any:
        mine, theirs = multiprocessing.Pipe()
        metrics.answer_snapshots(theirs, registry)
        return mine

    old, other, new = metrics.Registry("iris"), metrics.Registry("iris"), metrics.Registry("iris")
    old.observe_request("rest", 200, 0.01)
    other.observe_request("rest", 200, 0.01)
    snapshots.attach(1, worker(old))
    snapshots.attach(2, worker(other))
    assert snapshots.collect()["inference_requests_total"][("iris", "rest", "200")] == [2.0]
    snapshots.attach(1, worker(new))  # worker 1 died and was restarted
    new.observe_request("rest", 200, 0.01)
    assert snapshots.collect()["inference_requests_total"][("iris", "rest", "200")] == [3.0]


def test_bytes_inputs_from_binary_data_decode_as_text_or_as_they_are() -> None:
    """The binary extension and gRPC carry BYTES as bytes: text for ``str`` and columns, as they are for
    ``base64`` (base64 is only JSON's way to carry bytes), a 400 when text is needed and they are not UTF-8."""
    from mlflow_kserve_server.decode import decode
    from mlflow_kserve_server.signature import read_signature

    texts = np.array(["é".encode(), b"b"], dtype=object)
    body, header = binary_body([("t", "BYTES", texts)], parameters={"content_type": "str"})
    assert decode(decode_request(body, header), read_signature(None)) == ["é", "b"]
    blob = np.array([b"\xff\x00", b"aGk="], dtype=object)
    tail = to_raw(blob, "BYTES")
    head = json.dumps({"inputs": [{"name": "b", "shape": [2], "datatype": "BYTES", "parameters": {
        "content_type": "base64", "binary_data_size": len(tail)}}]}).encode()  # fmt: skip
    assert decode(decode_request(head + tail, str(len(head))), read_signature(None)) == [b"\xff\x00", b"aGk="]
    body, header = binary_body([("t", "BYTES", np.array([b"\xff"], dtype=object))])
    with pytest.raises(V2Error, match="input 't': BYTES elements are not UTF-8 text"):
        decode(decode_request(body, header), read_signature(None))


def test_inferences_run_on_the_event_loop_only_while_they_are_quick() -> None:
    from mlflow_kserve_server.placement import COOL_DOWN, QUICK, SMALL, Placement

    placement = Placement()
    assert not placement.inline(100), "the first one goes to the inference thread, to be timed"
    placement.took(QUICK / 2, 100)
    assert placement.inline(100) and not placement.inline(SMALL + 1), "quick and small: on the loop"
    placement.took(QUICK * 3, 100)
    for _ in range(COOL_DOWN):
        assert not placement.inline(100), "after a slow one: in the thread, timed there"
        placement.took(QUICK / 2, 100)
    assert placement.inline(100)
    placement.took(5.0, SMALL + 1)
    assert placement.inline(100), "a large body may take long: it says nothing about small ones"
    placement.close()
