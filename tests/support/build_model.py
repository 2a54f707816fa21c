"""Runs INSIDE a builder venv (its own MLflow, scikit-learn, NumPy): saves one model and expected.json with
the local ``mlflow.pyfunc.load_model(dir).predict(input)`` result the served V2 answer must equal, and the
builder's own package versions (``environment``: what the model was trained and logged with).

    python build_model.py KIND MODEL_DIR EXPECTED_JSON

``LOGGED_AT`` (env, "2024-02-15 12:00:00.000000"): the model's MLmodel ``utc_time_created``, set through MLflow's
own ``Model(utc_time_created=...)`` when logging (for a builder installed as of that day: models.py).
"""

from __future__ import annotations

import json
import os
import re
import sys
from importlib import metadata

import mlflow
import numpy as np
import pandas as pd


class RomanLength(mlflow.pyfunc.PythonModel):
    """Needs `roman`, a package no serving stack brings: proves per-model dependencies."""

    def predict(self, context, model_input, params=None):
        import roman

        values = np.asarray(model_input, dtype=np.float64).reshape(-1)
        return np.array([len(roman.toRoman(int(v))) for v in values], dtype=np.float64)


class IrisClassifier(mlflow.pyfunc.PythonModel):
    """A fitted scikit-learn model behind a PythonModel: what MLflow logs with its uv project files."""

    def __init__(self, model):
        self.model = model

    def predict(self, context, model_input, params=None):
        return self.model.predict(model_input)


class Probe(mlflow.pyfunc.PythonModel):
    """Needs ``mlflow-kserve-probe`` (from the tests' local index, not from the builder): loading imports it."""

    def load_context(self, context):
        import mlflow_kserve_probe  # noqa: F401

    def predict(self, context, model_input, params=None):
        return np.asarray(model_input, dtype=np.float64).reshape(-1) * 2


class BrokenLoader(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        raise RuntimeError("model weights are corrupt: checksum mismatch in weights.bin")

    def predict(self, context, model_input, params=None):
        return model_input


def iris_frame() -> tuple[pd.DataFrame, np.ndarray]:
    from sklearn.datasets import load_iris

    data = load_iris()
    frame = pd.DataFrame(data.data.astype(np.float64), columns=data.feature_names)
    return frame, data.target


def sklearn_columns(out: str) -> tuple[dict, str]:
    from sklearn.linear_model import LogisticRegression

    frame, target = iris_frame()
    model = LogisticRegression(max_iter=1000).fit(frame, target)
    example = frame.iloc[[0, 60, 120, 149]]
    kwargs = {}
    if hasattr(mlflow.sklearn, "SERIALIZATION_FORMAT_CLOUDPICKLE"):
        kwargs["serialization_format"] = mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE
    signature = mlflow.models.infer_signature(example, model.predict(example))
    mlflow.sklearn.save_model(model, out, signature=signature, **kwargs)
    return {c: example[c].tolist() for c in example.columns}, "columns"


def sklearn_tensor(out: str) -> tuple[list, str]:
    from sklearn.linear_model import LogisticRegression

    frame, target = iris_frame()
    values = frame.to_numpy()
    model = LogisticRegression(max_iter=1000).fit(values, target)
    example = values[[0, 60, 120, 149]]
    signature = mlflow.models.infer_signature(example, model.predict(example))
    mlflow.sklearn.save_model(
        model, out, signature=signature, serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE
    )
    return example.tolist(), "tensor"


def custom_extra_dep(out: str) -> tuple[list, str]:
    example = np.array([[1.0], [4.0], [9.0], [1987.0]])
    output = RomanLength().predict(None, example)
    signature = mlflow.models.infer_signature(example, output)
    from importlib.metadata import version

    mlflow.pyfunc.save_model(
        out,
        python_model=RomanLength(),
        signature=signature,
        pip_requirements=[f"mlflow=={mlflow.__version__}", f"roman=={version('roman')}", f"numpy=={np.__version__}"],
    )
    return example.tolist(), "tensor"


def sklearn_loose(out: str) -> tuple[dict, str]:
    """Logged the way many are: loose requirements (no versions), so the serving side picks the versions; with
    ``LOGGED_AT`` as its utc_time_created."""
    from sklearn.linear_model import LogisticRegression

    frame, target = iris_frame()
    model = LogisticRegression(max_iter=1000).fit(frame, target)
    example = frame.iloc[[0, 60, 120, 149]]
    signature = mlflow.models.infer_signature(example, model.predict(example))
    logged = mlflow.models.Model(utc_time_created=os.environ["LOGGED_AT"])
    mlflow.sklearn.save_model(
        model, out, signature=signature, mlflow_model=logged, pip_requirements=["mlflow", "scikit-learn", "pandas"],
        serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
    )  # fmt: skip
    return {c: example[c].tolist() for c in example.columns}, "columns"


def pyfunc_sklearn(out: str) -> tuple[dict, str]:
    """Saved from a uv project's folder: MLflow (>= 3.17) exports the project's lock into requirements.txt and
    copies uv.lock, pyproject.toml and .python-version into the model."""
    from sklearn.linear_model import LogisticRegression

    frame, target = iris_frame()
    example = frame.iloc[[0, 60, 120, 149]]
    wrapped = IrisClassifier(LogisticRegression(max_iter=1000).fit(frame, target))
    signature = mlflow.models.infer_signature(example, wrapped.predict(None, example))
    mlflow.pyfunc.save_model(out, python_model=wrapped, signature=signature)
    return {c: example[c].tolist() for c in example.columns}, "columns"


def probe(out: str) -> tuple[list, str]:
    example = np.array([[1.0], [2.0]])
    signature = mlflow.models.infer_signature(example, example.reshape(-1) * 2)
    requirements = [f"mlflow=={mlflow.__version__}", "mlflow-kserve-probe"]
    mlflow.pyfunc.save_model(out, python_model=Probe(), signature=signature, pip_requirements=requirements)
    return example.tolist(), "tensor"


def loader_raises(out: str) -> tuple[list, str]:
    mlflow.pyfunc.save_model(out, python_model=BrokenLoader(), pip_requirements=[f"mlflow=={mlflow.__version__}"])
    return [[1.0]], "tensor"


KINDS = {
    "sklearn-columns": sklearn_columns,
    "sklearn-tensor": sklearn_tensor,
    "custom-extra-dep": custom_extra_dep,
    "loader-raises": loader_raises,
    "sklearn-loose": sklearn_loose,
    "pyfunc-sklearn": pyfunc_sklearn,
    "probe": probe,
}
NOT_LOADED_HERE = ("loader-raises", "probe")  # no local prediction: it raises, or needs a package the builder lacks


def main() -> None:
    kind, out, expected_path = sys.argv[1], sys.argv[2], sys.argv[3]
    model_input, shape = KINDS[kind](out)
    expected = {"kind": shape, "input": model_input, "mlflow": mlflow.__version__}
    expected["environment"] = {
        re.sub(r"[-_.]+", "-", dist.metadata["Name"]).lower(): dist.version for dist in metadata.distributions()
    }
    if kind not in NOT_LOADED_HERE:
        loaded = mlflow.pyfunc.load_model(out)
        frame = pd.DataFrame(model_input) if shape == "columns" else np.asarray(model_input, dtype=np.float64)
        expected["output"] = np.asarray(loaded.predict(frame)).reshape(-1).tolist()
    with open(expected_path, "w") as fh:
        json.dump(expected, fh)


if __name__ == "__main__":
    main()
