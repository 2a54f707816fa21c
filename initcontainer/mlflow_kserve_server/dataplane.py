"""The work behind every V2 call, done once for all transports (KServe's ``protocol/dataplane.py`` habit): the
metadata, and infer: the request decoded into the model's input, ``predict``, the prediction encoded, the outputs
the request asked for chosen and ordered. REST (rest.py) and gRPC (grpc_server.py) only translate to and from it."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from mlflow_kserve_server.decode import decode
from mlflow_kserve_server.encode import EncodeError, encode
from mlflow_kserve_server.errors import V2Error
from mlflow_kserve_server.model import ServedModel
from mlflow_kserve_server.tensors import InferRequest, InferResponse, Tensor

SERVER_NAME = "mlflow"
# Triton's names (docs/protocol/extension_binary_data.md, extension_parameters.md), as tritonclient checks them.
EXTENSIONS = ["binary_tensor_data", "parameters"]


class DataPlane:
    def __init__(self, served: ServedModel, observe_predict: Callable[[float], None] | None = None) -> None:
        self.served = served
        self.name = served.settings.name
        self.version = served.settings.version
        self.observe_predict = observe_predict

    def server_metadata(self) -> dict[str, Any]:
        return {"name": SERVER_NAME, "version": self.served.mlflow_version, "extensions": list(EXTENSIONS)}

    def check_model(self, name: str, version: str | None) -> None:
        """A V2Error 404 unless ``name`` (and ``version``, when given) is the served model."""
        if name != self.name or (version not in (None, "") and version != self.version):
            if version in (None, ""):
                raise V2Error(f"Model {name} not found", 404)
            raise V2Error(f"Model {name} with version {version} not found", 404)

    def model_metadata(self) -> dict[str, Any]:
        """The inputs and outputs infer takes and returns (signature.py); a model without a signature declares
        none: any inputs are taken, and its single output is ``output-0``."""
        signature = self.served.signature
        return {
            "name": self.name,
            "versions": [self.version] if self.version else [],
            "platform": "",
            "inputs": [t.as_json() for t in signature.inputs or ()],
            "outputs": [t.as_json() for t in signature.outputs or ()],
            "parameters": {"content_type": signature.content_type} if signature.content_type else {},
        }

    def infer(self, request: InferRequest) -> InferResponse:
        """Decode, predict, encode; a V2Error (400 for the request's fault, 500 for the model's) otherwise."""
        served = self.served
        model_input = decode(request, served.signature)
        started = time.perf_counter()
        try:
            prediction = served.predict(model_input, request.model_params())
        finally:
            if self.observe_predict is not None:
                self.observe_predict(time.perf_counter() - started)
        try:
            encoded = encode(prediction, served.signature.outputs)
        except EncodeError as exc:
            fix = "have the model return a DataFrame, an array, a list or a dict of arrays"
            raise V2Error(f"{exc}; {fix}", 500) from None
        return InferResponse(
            model_name=self.name,
            model_version=self.version,
            id=request.id or str(uuid.uuid4()),
            outputs=chosen_outputs(encoded.outputs, request),
            parameters={"content_type": encoded.content_type},
        )


def chosen_outputs(outputs: list[Tensor], request: InferRequest) -> list[Tensor]:
    """The outputs ``request.outputs`` names, in its order (all of them when it names none); an unknown name is the
    request's mistake (Triton answers it with 400 too)."""
    if request.outputs is None:
        return outputs
    by_name = {o.name: o for o in outputs}
    unknown = [o.name for o in request.outputs if o.name not in by_name]
    if unknown:
        raise V2Error(
            f"unknown output {', '.join(map(repr, unknown))}: the model's outputs are {', '.join(by_name) or 'none'}; "
            "ask for those (the model metadata lists them), or leave 'outputs' out for all"
        )
    return [by_name[o.name] for o in request.outputs]
