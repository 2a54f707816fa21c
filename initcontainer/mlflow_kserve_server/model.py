"""The loaded model: MLflow's pyfunc, its signature read as V2 tensors, and ``predict`` with errors sorted into
the client's (4xx, MLflow's schema and params checks) and the model's (500, with its error text)."""

from __future__ import annotations

import logging
import time
import traceback
from dataclasses import dataclass
from typing import Any

from mlflow_kserve_server.errors import EXIT_LOAD, StartError, Stopped, V2Error
from mlflow_kserve_server.settings import ModelSettings
from mlflow_kserve_server.signature import ModelSignature, read_signature

log = logging.getLogger("mlflow_kserve_server")


@dataclass
class ServedModel:
    settings: ModelSettings
    pyfunc: Any  # mlflow.pyfunc.PyFuncModel
    signature: ModelSignature
    mlflow_version: str

    def predict(self, model_input: Any, params: dict[str, Any] | None) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            return self.pyfunc.predict(model_input, params=params)
        except MlflowException as exc:  # MLflow's own input and params checks say which status they mean
            status = exc.get_http_status_code()
            if status >= 500:
                log.error("the model failed:\n%s", traceback.format_exc().rstrip())
            raise V2Error(exc.message, status) from None
        except Exception as exc:
            if _in_schema_enforcement(exc):  # MLflow checking the input, with an error it did not wrap (pyarrow's)
                raise V2Error(f"the input does not fit the model's signature: {type(exc).__name__}: {exc}") from None
            log.error("the model failed:\n%s", traceback.format_exc().rstrip())
            raise V2Error(f"the model failed: {type(exc).__name__}: {exc}", 500) from None


def load(settings: ModelSettings) -> ServedModel:
    """Load the model with MLflow (``scoring_server.load_model_with_mlflow_config``: MLflow's own loader, which
    honours a serving model config); any failure is a ``StartError`` with the model's error."""
    started = time.perf_counter()
    log.info("loading model %s from %s", settings.name, settings.path)
    try:
        import mlflow
        from mlflow.pyfunc import scoring_server

        loader = getattr(scoring_server, "load_model_with_mlflow_config", None) or mlflow.pyfunc.load_model
        pyfunc = loader(str(settings.path))
    except BaseException as exc:
        if _interrupted(exc):
            raise Stopped from None
        log.error("loading the model failed:\n%s", traceback.format_exc().rstrip())
        raise StartError(
            f"the model failed to load: {type(exc).__name__}: {' '.join(str(exc).split())}", EXIT_LOAD
        ) from None
    served = ServedModel(settings, pyfunc, read_signature(pyfunc.metadata.signature), mlflow.__version__)
    flavor = pyfunc.metadata.flavors.get("python_function", {}).get("loader_module", "?")
    seconds = time.perf_counter() - started
    log.info("model %s loaded in %.2f s (MLflow %s, %s)", settings.name, seconds, served.mlflow_version, flavor)
    return served


def _in_schema_enforcement(exc: BaseException) -> bool:
    """Raised while MLflow enforced the signature on the input (``mlflow.models.utils._enforce_*``, called by
    ``PyFuncModel.predict`` before the model runs): the request's fault, whatever the exception type."""
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_name.startswith("_enforce_") and tb.tb_frame.f_globals.get("__name__", "").startswith("mlflow."):
            return True
        tb = tb.tb_next
    return False


def _interrupted(exc: BaseException | None) -> bool:
    """A stop (SIGTERM/SIGINT raise ``Stopped``, a KeyboardInterrupt, while loading) even when the import it hit
    wrapped it: Python turns an exception inside a class's ``__set_name__`` into RuntimeError "Error calling
    __set_name__", with the KeyboardInterrupt as its cause."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False
