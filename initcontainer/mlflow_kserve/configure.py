"""Step 6: the files the server container reads: MLServer's model-settings.json, and report.json (what was
installed, how long each step took). report.json is written last: its presence means init completed."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mlflow_kserve.files import write_atomic

RUNTIME = "mlserver_mlflow.MLflowRuntime"


def write_json(path: Path, payload: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(payload, indent=2, sort_keys=False) + "\n")


def model_settings(
    name: str, model_dir: Path, models_dir: Path, *, max_batch_size: int = 0, max_batch_time: float = 0.0
) -> dict[str, Any]:
    """MLServer resolves a relative ``uri`` against the settings file's folder: the same file works in the
    pod (/mnt/models) and under `mlflow-kserve run`'s work dir. Adaptive batching is on when
    ``max_batch_size`` > 1 (MLServer's own rule); MLServer's defaults apply otherwise."""
    uri = os.path.relpath(model_dir, models_dir)
    settings: dict[str, Any] = {
        "name": name,
        "implementation": RUNTIME,
        "parameters": {"uri": f"./{uri}"},
    }
    if max_batch_size > 1:
        settings["max_batch_size"] = max_batch_size
        settings["max_batch_time"] = max_batch_time
    return settings
