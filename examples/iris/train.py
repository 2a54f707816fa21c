"""Train the bundled example: an iris classifier with named float64 columns, saved as an MLflow model.

    python examples/iris/train.py [OUT_DIR]     # default ./iris-model

Then serve it: `mlflow-kserve run --model-uri ./iris-model` and send examples/iris/request.json.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "iris-model")
    data = load_iris()
    frame = pd.DataFrame(data.data.astype(np.float64), columns=data.feature_names)
    model = LogisticRegression(max_iter=1000).fit(frame, data.target)
    example = frame.iloc[[0, 100]]
    signature = mlflow.models.infer_signature(example, model.predict(example))
    if out.exists():
        if not (out / "MLmodel").is_file() and any(out.iterdir()):
            sys.exit(f"{out} exists and is not an MLflow model: give another directory")
        shutil.rmtree(out)  # a model saved by an earlier run
    # skops, not pickle: loading a skops file runs no code from it (MLflow warns about pickle formats).
    skops = mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS
    mlflow.sklearn.save_model(model, out, signature=signature, serialization_format=skops)
    print(f"saved {out} (MLflow {mlflow.__version__}); predict({example.values.tolist()}) = {model.predict(example)}")


if __name__ == "__main__":
    main()
