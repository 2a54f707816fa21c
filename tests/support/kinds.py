"""The "kinds" model: a PythonModel (models from code: no pickled test classes) saved with the test venv's MLflow
(3.17), whose ``params`` choose which kind of output ``predict`` returns, so one server start covers every output
kind, a model that raises, params reaching predict and string columns in and out. Served from a venv
`mlflow-kserve init` builds for sklearn-columns (the same MLflow)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from support.v2servers import write_model_settings

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


def request(kind: str, **change: Any) -> dict[str, Any]:
    inputs = [
        {"name": "x", "shape": [3], "datatype": "FP64", "data": [1.0, 2.0, 3.0]},
        {"name": "text", "shape": [3], "datatype": "BYTES", "data": ["a", "bé", "c"]},
    ]
    return {"inputs": inputs, "parameters": {"kind": kind, "scale": 2.0}, **change}


def save_kinds_model(work: Path) -> Path:
    """The kinds model saved under ``work``, and its model-settings.json (name kinds, version 3): the models dir."""
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    code = work / "kinds_model.py"
    code.write_text(MODEL_CODE)
    example = pd.DataFrame({"x": [1.0, 2.0], "text": ["a", "b"]})
    signature = infer_signature(
        example, pd.DataFrame({"y": [1.0], "shout": ["A"]}), params={"kind": "frame", "scale": 1.0}
    )
    mlflow.pyfunc.save_model(work / "model", python_model=str(code), signature=signature,
                             pip_requirements=[f"mlflow=={mlflow.__version__}"])  # fmt: skip
    write_model_settings(work / "models", NAME, work / "model", VERSION)
    return work / "models"
