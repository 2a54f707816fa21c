"""mlserver-mlflow's ``MLflowRuntime`` with what V2 clients need where it falls short (SeldonIO/MLServer at 1.7.1
and 1.6.1, ``runtimes/mlflow/mlserver_mlflow/runtime.py`` ``predict``):

- **Every failure is a V2 error**: ``{"error": "<one line>"}``, 400 for a request the model cannot take (it does
  not decode, or MLflow refuses it: schema, params), 500 for the model's own failure or an answer that cannot be
  encoded. mlserver-mlflow lets those exceptions out of ``predict``: Starlette's ServerErrorMiddleware then answers
  500 with a plain-text traceback (MLServer runs FastAPI with ``debug=True`` by default: ``mlserver/settings.py``
  ``debug: bool = True``, ``mlserver/rest/app.py`` ``FastAPI(debug=settings.debug)``) and re-raises, and uvicorn
  closes the keep-alive connection without ``Connection: close``, so a client's next request on it fails. An
  ``MLServerError`` is answered by MLServer's own handler (``mlserver/rest/errors.py``) and nothing is re-raised.
- **The request's headers never reach the model**: MLServer copies them into the request's parameters
  (``mlserver/rest/endpoints.py`` ``insert_headers``) and, for a model without a signature and a request without
  a content type, hands the model the whole request object (``mlserver/model.py`` ``decode_request``): its
  error then printed them. Such a request is decoded as the mlflow backend does: ``np`` for one input, ``pd``
  for several.
- **String columns under pandas 3**: pandas 3 gives text columns the ``str`` dtype, whose NumPy kind is ``O``, which
  MLServer's codec cannot name (``mlserver/codecs/numpy.py`` ``to_datatype``: ``KeyError: 'O'``); they are
  handed to it as ``object`` columns, which it encodes as BYTES.
- **Requested outputs**: ``outputs`` in a request chooses and orders the outputs returned; an unknown name is a
  400 (mlserver-mlflow returns every output whatever was asked).
- **Outputs named and shaped as the metadata says**: a bare array is answered as ``output-1`` with a batch
  dimension added (``mlserver/codecs/utils.py`` ``SingleInputRequestCodec``, ``inject_batch_dimension``) while the
  model's metadata, from its signature, declares ``output-0`` and the signature's shape; the answer takes the
  declared name and shape (``output-0`` for a model without a signature).
- **Protocol parameters are not model parameters**: tritonclient sends ``binary_data_output`` in the request's
  parameters (MLServer cannot send binary tensors anyway); it is not passed to ``predict(params=...)``.
- **A parameter MLServer could not read is a 400**: its gRPC proto has no ``double_param`` (``proto/dataplane.proto``
  ``InferParameter``), so a float parameter sent over gRPC (tritonclient does) arrived as ``None`` and the model
  ran with it (``mlserver/grpc/converters.py`` ``_get_value``).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from mlflow.exceptions import MlflowException
from mlserver.codecs import NumpyRequestCodec, PandasCodec
from mlserver.errors import MLServerError
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver_mlflow import MLflowRuntime as _MLflowRuntime
from mlserver_mlflow.codecs import TensorDictCodec

# Request parameters that belong to the protocol (Triton's binary tensor extension), not to the model.
PROTOCOL_PARAMETERS = frozenset({"binary_data_output"})
MAX_MESSAGE = 1000
UNNAMED, FIRST_OUTPUT = "output-1", "output-0"  # what MLServer names a bare array's output; what metadata would


class V2Error(MLServerError):
    """An error MLServer answers as ``{"error": message}`` with ``status_code``. It survives pickling with its
    status (MLServer's inference workers send exceptions back to the server process pickled)."""

    def __init__(self, message: str, status_code: int = 400) -> None:
        super().__init__(message, status_code)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.status_code))


class MLflowRuntime(_MLflowRuntime):
    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        model_input, params = self._decode(payload), _model_params(payload)
        try:
            prediction = self._model.predict(model_input, params=params)
        except MlflowException as exc:  # MLflow's checks of the input and the params: the request's fault
            status = exc.get_http_status_code()
            status = status if 400 <= status < 500 else 500
            raise V2Error(_one_line("the model refused the request", exc), status) from None
        except Exception as exc:
            raise V2Error(_one_line("the model failed", exc), 500) from None
        try:
            response = self.encode_response(_encodable(prediction), default_codec=TensorDictCodec)
        except Exception as exc:
            fix = "have the model return a DataFrame, an array, a list or a dict of arrays"
            raise V2Error(f"{_one_line('the prediction cannot be encoded', exc)}; {fix}", 500) from None
        self._as_declared(response)
        return _requested(payload, response)

    def _decode(self, payload: InferenceRequest) -> Any:
        default = None
        content_type = payload.parameters.content_type if payload.parameters else None
        if self._signature is None and content_type is None:
            default = NumpyRequestCodec if len(payload.inputs) == 1 else PandasCodec
        try:
            decoded = self.decode_request(payload, default_codec=default)
        except Exception as exc:
            raise V2Error(_one_line("the request cannot be decoded", exc), 400) from None
        if isinstance(decoded, InferenceRequest):  # no codec took it: never hand the model the request itself
            raise V2Error("the request cannot be decoded: give it parameters.content_type (pd, np, str or dict)")
        return decoded

    def _as_declared(self, response: InferenceResponse) -> None:
        """Name a lone unnamed output as the metadata does (``output-0`` without a signature, as the mlflow backend
        and KServe's own model server name it), and give each output the declared shape's rank."""
        declared = {tensor.name: tensor for tensor in self.outputs or ()}
        if len(response.outputs) == 1 and response.outputs[0].name not in declared:
            if len(declared) == 1:
                response.outputs[0].name = next(iter(declared))
            elif not declared and response.outputs[0].name == UNNAMED:
                response.outputs[0].name = FIRST_OUTPUT
        for output in response.outputs:
            tensor = declared.get(output.name)
            if tensor is not None:
                output.shape = _fit_rank(list(output.shape), list(tensor.shape))


def _model_params(payload: InferenceRequest) -> dict[str, Any] | None:
    extra = (payload.parameters.model_extra or {}) if payload.parameters else {}
    params = {key: value for key, value in extra.items() if key not in PROTOCOL_PARAMETERS}
    unread = [key for key, value in params.items() if value is None]
    if unread:  # MLServer's gRPC proto has no double_param: Triton's arrives as an empty value, not as the number
        raise V2Error(
            f"parameter {', '.join(map(repr, unread))} has no value MLServer can read: over gRPC it reads bool, "
            "int64 and string parameters only; send a number as an integer or a string, or use REST"
        )
    return params or None


def _encodable(prediction: Any) -> Any:
    """pandas 3's ``str`` columns as ``object`` columns, which MLServer's codecs encode as BYTES."""
    if isinstance(prediction, pd.DataFrame):
        text = [c for c, dtype in prediction.dtypes.items() if isinstance(dtype, pd.StringDtype)]
        return prediction.astype({c: object for c in text}) if text else prediction
    if isinstance(prediction, pd.Series) and isinstance(prediction.dtype, pd.StringDtype):
        return prediction.astype(object)
    return prediction


def _requested(payload: InferenceRequest, response: InferenceResponse) -> InferenceResponse:
    if not payload.outputs:
        return response
    answered = {output.name: output for output in response.outputs}
    unknown = [o.name for o in payload.outputs if o.name not in answered]
    if unknown:
        raise V2Error(
            f"unknown output {', '.join(map(repr, unknown))}: the model's outputs are {', '.join(answered)}", 400
        )
    response.outputs = [answered[o.name] for o in payload.outputs]
    return response


def _fit_rank(shape: list[int], declared: list[int]) -> list[int]:
    """``shape`` with a trailing 1 dropped or added when that is all that tells it from the ``declared`` shape."""
    if len(shape) == len(declared) + 1 and shape[-1] == 1:
        return shape[:-1]
    if len(shape) + 1 == len(declared) and declared[-1] == 1:
        return [*shape, 1]
    return shape


def _one_line(what: str, exc: BaseException) -> str:
    text = " ".join(str(getattr(exc, "message", None) or exc).split())
    return f"{what}: {type(exc).__name__}: {text}"[:MAX_MESSAGE]
