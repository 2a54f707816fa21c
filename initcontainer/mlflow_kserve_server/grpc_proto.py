"""The V2 gRPC messages (package ``inference``), built at run time from a FileDescriptorProto written here in code,
so they work with whatever protobuf the model's venv pins (3.20 through 7.x): no ``_pb2`` module generated for one
protobuf version is shipped. The fields and numbers are Triton's ``grpc_service.proto``
(triton-inference-server/common ``protobuf/grpc_service.proto``: ModelInferRequest lines 583-707, InferParameter
439-476 with ``double_param`` and ``uint64_param``), a superset of KServe's ``grpc_predict_v2.proto``
(python/kserve/kserve/protocol/grpc), so tritonclient.grpc and KServe's InferenceGRPCClient both speak to it.

Only google.protobuf is imported, and only when ``messages()`` is first called (grpcio brings no protobuf; the
model's MLflow always does).
"""

from __future__ import annotations

from functools import lru_cache
from types import SimpleNamespace
from typing import Any

PACKAGE = "inference"
SERVICE = "inference.GRPCInferenceService"
FILE_NAME = "mlflow_kserve_server/grpc_service.proto"

# (message, [(field, number, type, repeated, message type or None, oneof index or None)], nested messages)
_B, _S, _I64, _I32, _U32, _U64, _F, _D, _BY, _M = (
    "bool", "string", "int64", "int32", "uint32", "uint64", "float", "double", "bytes", "message",
)  # fmt: skip
_PARAMS = ("parameters", None)  # a map<string, InferParameter> field (its entry type is made per message)


def _messages_spec() -> list[tuple[str, list[tuple[Any, ...]], list[Any]]]:
    tensor_metadata = ("TensorMetadata", [("name", 1, _S), ("datatype", 2, _S), ("shape", 3, _I64, True)], [])
    infer_input = ("InferInputTensor", [("name", 1, _S), ("datatype", 2, _S), ("shape", 3, _I64, True),
                   (_PARAMS, 4), ("contents", 5, _M, False, ".inference.InferTensorContents")], [])  # fmt: skip
    requested_output = ("InferRequestedOutputTensor", [("name", 1, _S), (_PARAMS, 2)], [])
    infer_output = ("InferOutputTensor", [("name", 1, _S), ("datatype", 2, _S), ("shape", 3, _I64, True),
                    (_PARAMS, 4), ("contents", 5, _M, False, ".inference.InferTensorContents")], [])  # fmt: skip
    return [
        ("ServerLiveRequest", [], []),
        ("ServerLiveResponse", [("live", 1, _B)], []),
        ("ServerReadyRequest", [], []),
        ("ServerReadyResponse", [("ready", 1, _B)], []),
        ("ModelReadyRequest", [("name", 1, _S), ("version", 2, _S)], []),
        ("ModelReadyResponse", [("ready", 1, _B)], []),
        ("ServerMetadataRequest", [], []),
        ("ServerMetadataResponse", [("name", 1, _S), ("version", 2, _S), ("extensions", 3, _S, True)], []),
        ("ModelMetadataRequest", [("name", 1, _S), ("version", 2, _S)], []),
        ("ModelMetadataResponse", [
            ("name", 1, _S), ("versions", 2, _S, True), ("platform", 3, _S),
            ("inputs", 4, _M, True, ".inference.ModelMetadataResponse.TensorMetadata"),
            ("outputs", 5, _M, True, ".inference.ModelMetadataResponse.TensorMetadata"),
        ], [tensor_metadata]),
        ("ModelInferRequest", [
            ("model_name", 1, _S), ("model_version", 2, _S), ("id", 3, _S), (_PARAMS, 4),
            ("inputs", 5, _M, True, ".inference.ModelInferRequest.InferInputTensor"),
            ("outputs", 6, _M, True, ".inference.ModelInferRequest.InferRequestedOutputTensor"),
            ("raw_input_contents", 7, _BY, True),
        ], [infer_input, requested_output]),
        ("ModelInferResponse", [
            ("model_name", 1, _S), ("model_version", 2, _S), ("id", 3, _S), (_PARAMS, 4),
            ("outputs", 5, _M, True, ".inference.ModelInferResponse.InferOutputTensor"),
            ("raw_output_contents", 6, _BY, True),
        ], [infer_output]),
        ("InferParameter", [
            ("bool_param", 1, _B, False, None, 0), ("int64_param", 2, _I64, False, None, 0),
            ("string_param", 3, _S, False, None, 0), ("double_param", 4, _D, False, None, 0),
            ("uint64_param", 5, _U64, False, None, 0),
        ], []),
        ("InferTensorContents", [
            ("bool_contents", 1, _B, True), ("int_contents", 2, _I32, True), ("int64_contents", 3, _I64, True),
            ("uint_contents", 4, _U32, True), ("uint64_contents", 5, _U64, True), ("fp32_contents", 6, _F, True),
            ("fp64_contents", 7, _D, True), ("bytes_contents", 8, _BY, True),
        ], []),
    ]  # fmt: skip


def file_descriptor_proto() -> Any:
    """The ``FileDescriptorProto`` of the service's messages."""
    from google.protobuf import descriptor_pb2

    file = descriptor_pb2.FileDescriptorProto(name=FILE_NAME, package=PACKAGE, syntax="proto3")
    for name, fields, nested in _messages_spec():
        _message(file.message_type.add(), name, fields, nested, f".{PACKAGE}.{name}")
    return file


def _message(message: Any, name: str, fields: list[tuple[Any, ...]], nested: list[Any], full_name: str) -> None:
    from google.protobuf import descriptor_pb2

    kinds = descriptor_pb2.FieldDescriptorProto
    message.name = name
    if any(len(f) > 5 and f[5] is not None for f in fields):  # InferParameter's oneof
        message.oneof_decl.add(name="parameter_choice")
    for inner_name, inner_fields, inner_nested in nested:
        _message(message.nested_type.add(), inner_name, inner_fields, inner_nested, f"{full_name}.{inner_name}")
    for spec in fields:
        if spec[0] == _PARAMS:  # map<string, InferParameter>: a repeated nested ParametersEntry with map_entry
            entry = message.nested_type.add(name="ParametersEntry")
            entry.options.map_entry = True
            entry.field.add(name="key", number=1, type=kinds.TYPE_STRING, label=kinds.LABEL_OPTIONAL)
            entry.field.add(name="value", number=2, type=kinds.TYPE_MESSAGE, label=kinds.LABEL_OPTIONAL,
                            type_name=f".{PACKAGE}.InferParameter")  # fmt: skip
            message.field.add(name="parameters", number=spec[1], type=kinds.TYPE_MESSAGE,
                              label=kinds.LABEL_REPEATED, type_name=f"{full_name}.ParametersEntry")  # fmt: skip
            continue
        field_name, number, kind = spec[0], spec[1], spec[2]
        repeated = len(spec) > 3 and spec[3]
        field = message.field.add(
            name=field_name,
            number=number,
            type=getattr(kinds, f"TYPE_{kind.upper()}"),
            label=kinds.LABEL_REPEATED if repeated else kinds.LABEL_OPTIONAL,
        )
        if kind == _M:
            field.type_name = spec[4]
        if len(spec) > 5 and spec[5] is not None:
            field.oneof_index = spec[5]


@lru_cache(maxsize=1)
def messages() -> SimpleNamespace:
    """The message classes by name (``messages().ModelInferRequest``), made once per process in a pool of their
    own, with the factory API this protobuf has: ``message_factory.GetMessageClass`` (protobuf >= 4.21; the only
    one left in 5.x and later), else ``MessageFactory(pool).GetPrototype`` (3.20)."""
    from google.protobuf import descriptor_pool, message_factory

    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(file_descriptor_proto().SerializeToString())
    make = getattr(message_factory, "GetMessageClass", None)
    if make is None:  # protobuf 3.20
        factory = message_factory.MessageFactory(pool)
        make = factory.GetPrototype
    classes = {}
    for name, _fields, _nested in _messages_spec():
        classes[name] = make(pool.FindMessageTypeByName(f"{PACKAGE}.{name}"))
    return SimpleNamespace(**classes)


def protobuf_version() -> str:
    from google.protobuf import __version__

    return __version__
