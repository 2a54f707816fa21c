"""The conformance suite's models (tests/test_v2_conformance.py): one of each kind V2 clients meet, logged from
code with the test venv's MLflow (no pickled classes), the models of one environment with the same requirements
so `mlflow-kserve init` builds that environment once (one cache entry) and the others hit it:

- ``floats``: named FP64 columns a, b, c -> a 1-d FP64 array (a regressor);
- ``mixed``: a string, an integer and a boolean column -> a DataFrame with a string column, an INT64 and a BOOL
  one; in the pandas-3 environment and again in a pandas-2 one (the only model there);
- ``tensor32``: an FP32 tensor signature, shape (-1, 4) -> FP32 (-1, 2);
- ``params``: a column x and params with defaults (scale 2.0, offset 0.5, fail False) -> x * scale + offset;
  ``fail`` makes the model raise; requests send scale as the integer 3 (MLflow takes it for the double: KServe's
  gRPC parameters have no double at all);
- ``nosig``: no signature at all -> twice its input.

Each model's expected answer is computed here from its inputs (the model code is that arithmetic), so what the
tests assert comes from the models and the protocol, not from a server's answer."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock

from support.models import CACHE

# environment -> the requirements every model of it is logged with (besides the test venv's mlflow)
ENVIRONMENTS: dict[str, tuple[str, ...]] = {
    "pandas3": ("pandas==3.1.1",),
    "pandas2": ("pandas==2.3.3",),
}

FLOATS = """
import mlflow
import numpy as np


class Floats(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        frame = model_input
        return (frame["a"] + 2 * frame["b"] + 3 * frame["c"]).to_numpy(dtype=np.float64)


mlflow.models.set_model(Floats())
"""
MIXED = """
import mlflow
import numpy as np
import pandas as pd


class Mixed(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        frame = model_input
        return pd.DataFrame({
            "greeting": ["hi " + str(name) for name in frame["name"]],
            "double": frame["count"].to_numpy(dtype=np.int64) * 2,
            "negated": ~frame["flag"].to_numpy(dtype=bool),
        })


mlflow.models.set_model(Mixed())
"""
TENSOR32 = """
import mlflow
import numpy as np

WEIGHTS = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.5, -1.0]], dtype=np.float32)


class Tensor32(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return np.asarray(model_input, dtype=np.float32) @ WEIGHTS


mlflow.models.set_model(Tensor32())
"""
PARAMS = """
import mlflow
import numpy as np


class Params(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        params = params or {}
        if params.get("fail"):
            raise ValueError("the model refuses: fail was set")
        x = model_input["x"].to_numpy(dtype=np.float64)
        return x * params.get("scale", 2.0) + params.get("offset", 0.5)


mlflow.models.set_model(Params())
"""
NOSIG = """
import mlflow
import numpy as np


class NoSignature(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return np.asarray(model_input, dtype=np.float64) * 2.0


mlflow.models.set_model(NoSignature())
"""


def tensor(name: str, datatype: str, shape: list[int], data: list[Any]) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape, "data": data}


@dataclass(frozen=True)
class Output:
    """An output the model returns: its V2 datatype and values (flat, row-major). ``name`` is None for an unnamed
    tensor (a bare array): the server names it, and its metadata must give the same name."""

    name: str | None
    datatype: str
    data: list[Any]


@dataclass(frozen=True)
class Kind:
    name: str
    code: str
    inputs: list[dict[str, Any]]  # a V2 request's inputs the model takes
    outputs: list[Output]  # what it answers to them, in order
    signature: Callable[[], Any] | None = None  # builds the mlflow ModelSignature (None: no signature)
    params: dict[str, Any] = field(default_factory=dict)  # request parameters to send with ``inputs``


def _floats_signature() -> Any:
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec

    outputs = Schema([TensorSpec(np.dtype("float64"), (-1,))])
    return ModelSignature(Schema([ColSpec("double", c) for c in "abc"]), outputs)


def _mixed_signature() -> Any:
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    inputs = Schema([ColSpec("string", "name"), ColSpec("long", "count"), ColSpec("boolean", "flag")])
    outputs = Schema([ColSpec("string", "greeting"), ColSpec("long", "double"), ColSpec("boolean", "negated")])
    return ModelSignature(inputs, outputs)


def _tensor32_signature() -> Any:
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    inputs, outputs = TensorSpec(np.dtype("float32"), (-1, 4)), TensorSpec(np.dtype("float32"), (-1, 2))
    return ModelSignature(Schema([inputs]), Schema([outputs]))


def _params_signature() -> Any:
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema, TensorSpec

    params = ParamSchema([ParamSpec("scale", "double", 2.0), ParamSpec("offset", "double", 0.5),
                          ParamSpec("fail", "boolean", False)])  # fmt: skip
    return ModelSignature(Schema([ColSpec("double", "x")]), Schema([TensorSpec(np.dtype("float64"), (-1,))]), params)


KINDS: dict[str, Kind] = {
    "floats": Kind(
        "floats",
        FLOATS,
        [
            tensor("a", "FP64", [3], [1.0, 2.0, 0.5]),
            tensor("b", "FP64", [3], [0.25, -1.0, 4.0]),
            tensor("c", "FP64", [3], [1.0, 0.0, -2.0]),
        ],
        [Output(None, "FP64", [4.5, 0.0, 2.5])],
        _floats_signature,
    ),
    "mixed": Kind(
        "mixed",
        MIXED,
        [
            tensor("name", "BYTES", [3], ["ana", "bé", "z"]),
            tensor("count", "INT64", [3], [1, -2, 40]),
            tensor("flag", "BOOL", [3], [True, False, True]),
        ],
        [
            Output("greeting", "BYTES", ["hi ana", "hi bé", "hi z"]),
            Output("double", "INT64", [2, -4, 80]),
            Output("negated", "BOOL", [False, True, False]),
        ],
        _mixed_signature,
    ),
    "tensor32": Kind(
        "tensor32",
        TENSOR32,
        [tensor("input-0", "FP32", [2, 4], [1.0, 2.0, 3.0, 4.0, 0.5, 0.25, -1.0, 2.0])],
        [Output(None, "FP32", [6.0, 1.0, 0.5, -2.75])],
        _tensor32_signature,
    ),
    "params": Kind(
        "params",
        PARAMS,
        [tensor("x", "FP64", [3], [1.0, -0.5, 10.0])],
        [Output(None, "FP64", [3.5, -1.0, 30.5])],  # x * 3 + 0.5: scale sent, offset from its default
        _params_signature,
        {"scale": 3},  # an integer for a double param: KServe's gRPC parameters have no double (KServe's proto)
    ),
    "nosig": Kind(
        "nosig",
        NOSIG,
        [tensor("x", "FP64", [2, 3], [1.0, 2.0, 3.0, -1.0, 0.5, 0.0])],
        [Output(None, "FP64", [2.0, 4.0, 6.0, -2.0, 1.0, 0.0])],
    ),
}


@dataclass(frozen=True)
class Saved:
    """A model as saved: ``served`` is its name on the servers (``mixed-pandas2`` for the second mixed)."""

    served: str
    environment: str
    kind: Kind
    path: Path


# served name -> (environment, kind)
SERVED: dict[str, tuple[str, str]] = {
    "floats": ("pandas3", "floats"),
    "mixed": ("pandas3", "mixed"),
    "tensor32": ("pandas3", "tensor32"),
    "params": ("pandas3", "params"),
    "nosig": ("pandas3", "nosig"),
    "mixed-pandas2": ("pandas2", "mixed"),
}


def save_all() -> dict[str, Saved]:
    """Every served model, saved once and kept in .cache/v2-conformance (keyed by the code, the requirements and
    the saving MLflow): a rerun finds them, and init's verify-once record for them stays valid."""
    import mlflow

    saved = {}
    for served, (environment, kind_name) in SERVED.items():
        kind = KINDS[kind_name]
        requirements = (f"mlflow=={mlflow.__version__}", *ENVIRONMENTS[environment])
        key = hashlib.sha256("\0".join((kind.code, str(kind.signature is None), *requirements,
                                        Path(__file__).read_text())).encode()).hexdigest()[:12]  # fmt: skip
        home = CACHE / "v2-conformance" / f"{served}-{key}"
        with FileLock(str(home) + ".lock"):
            if not (home / "model" / "MLmodel").exists():
                shutil.rmtree(home, ignore_errors=True)
                home.mkdir(parents=True)
                code = home / f"{kind_name}_model.py"
                code.write_text(kind.code)
                signature = kind.signature() if kind.signature else None
                mlflow.pyfunc.save_model(home / "model.tmp", python_model=str(code), signature=signature,
                                         pip_requirements=list(requirements))  # fmt: skip
                (home / "model.tmp").rename(home / "model")
        saved[served] = Saved(served, environment, kind, home / "model")
    return saved


# --- MLServer 1.6.1's row: a model logged with MLflow 2.16 (the tests' mlflow216 builder venv) -----------------
LEGACY = """
import mlflow
import numpy as np
import pandas as pd


class Legacy(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        if (params or {}).get("fail"):
            raise ValueError("the model refuses: fail was set")
        return pd.DataFrame({
            "y": model_input["x"].to_numpy(dtype=np.float64) * 2,
            "shout": [str(s).upper() for s in model_input["name"]],
        })


mlflow.models.set_model(Legacy())
"""
LEGACY_SAVE = """
import sys

import mlflow
import pandas as pd
from mlflow.models import infer_signature

code, out, requirements = sys.argv[1], sys.argv[2], sys.argv[3:]
example = pd.DataFrame({"x": [1.0, 2.0], "name": ["a", "b"]})
signature = infer_signature(example, pd.DataFrame({"y": [1.0, 2.0], "shout": ["A", "B"]}), params={"fail": False})
mlflow.pyfunc.save_model(out, python_model=code, signature=signature, pip_requirements=requirements)
"""
LEGACY_KIND = Kind(
    "legacy",
    LEGACY,
    [tensor("x", "FP64", [2], [1.5, -2.0]), tensor("name", "BYTES", [2], ["ab", "é"])],
    [Output("y", "FP64", [3.0, -4.0]), Output("shout", "BYTES", ["AB", "É"])],
    lambda: None,  # it has one (saved by the builder); the tests only need to know that
)


def save_legacy() -> Saved:
    """The legacy model, saved by MLflow 2.16.2 in the mlflow216 builder venv (MLServer 1.6.1 serves it)."""
    from support.models import BUILDERS, builder_python

    requirements = [p for p in BUILDERS["mlflow216"] if p.split("=")[0] in ("mlflow", "numpy", "pandas")]
    key = hashlib.sha256("\0".join((LEGACY, LEGACY_SAVE, *requirements)).encode()).hexdigest()[:12]
    home = CACHE / "v2-conformance" / f"legacy-{key}"
    with FileLock(str(home) + ".lock"):
        if not (home / "model" / "MLmodel").exists():
            shutil.rmtree(home, ignore_errors=True)
            home.mkdir(parents=True)
            (home / "legacy_model.py").write_text(LEGACY)
            subprocess.run([builder_python("mlflow216"), "-c", LEGACY_SAVE, home / "legacy_model.py",
                            home / "model", *requirements], check=True, timeout=600, cwd=home)  # fmt: skip
    return Saved("legacy", "mlflow216", LEGACY_KIND, home / "model")


# --- the holdout-style wine model (scikit-learn, the wine data it ships, named FP64 columns) -------------
def save_wine() -> Path:
    """A scaler + logistic regression fitted on 80% of the wine data with the test venv's MLflow and
    scikit-learn, kept in .cache/v2-conformance (keyed by both versions and this file)."""
    import mlflow
    import sklearn

    key = hashlib.sha256("\0".join((mlflow.__version__, sklearn.__version__,
                                    Path(__file__).read_text())).encode()).hexdigest()[:12]  # fmt: skip
    home = CACHE / "v2-conformance" / f"wine-{key}"
    with FileLock(str(home) + ".lock"):
        if not (home / "model" / "MLmodel").exists():
            import numpy as np
            from sklearn.datasets import load_wine
            from sklearn.linear_model import LogisticRegression
            from sklearn.model_selection import train_test_split
            from sklearn.pipeline import make_pipeline
            from sklearn.preprocessing import StandardScaler

            shutil.rmtree(home, ignore_errors=True)
            data = load_wine(as_frame=True)
            frame = data.frame.drop(columns="target").astype(np.float64)
            train, holdout, y_train, _ = train_test_split(frame, data.target, test_size=0.2, random_state=7)
            model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(train, y_train)
            signature = mlflow.models.infer_signature(holdout.iloc[:2], model.predict(holdout.iloc[:2]))
            mlflow.sklearn.save_model(model, home / "model.tmp", signature=signature)
            (home / "model.tmp").rename(home / "model")
    return home / "model"
