"""The mlflow backend's optional packages (serving_stack.toml ``optional``, its accelerators): tried in the lock with
the model's set, and left out, saying why, when they do not resolve with the model's pins, exactly as MLServer's
pins would be refused; only their wheels are taken (``--only-binary``). Real uv resolutions against the index."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from mlflow_kserve.interpreter import probe
from mlflow_kserve.pipeline import _lock
from mlflow_kserve.plan import make_plan
from mlflow_kserve.serving_stack import select_stack
from mlflow_kserve.settings import Settings
from test_mlmodel import write_model


def _locked(tmp_path: Path, requirements: str, optional: tuple[str, ...]):
    root = write_model(tmp_path / "model", requirements)
    settings = Settings.from_options(model_uri=str(root), models_dir=str(tmp_path / "m"), env_dir=str(tmp_path / "e"))
    settings.env_dir.mkdir(parents=True)
    interpreter = probe(settings.python)
    plan = make_plan(root, settings, interpreter.version)
    stack = dataclasses.replace(select_stack("mlflow", "3.17.2", interpreter.version), optional=optional)
    return _lock(settings, plan, interpreter, stack, slim=False)


def test_optional_packages_that_resolve_are_added(tmp_path: Path) -> None:
    locked = _locked(tmp_path, "mlflow-skinny==3.17.2", ("orjson>=3.10",))
    assert locked.optional == ("orjson>=3.10",) and locked.left_out is None
    assert locked.lock.packages["orjson"].startswith("3.")
    assert "orjson>=3.10" in locked.request.requirements and locked.request.only_binary == ("orjson",)


def test_optional_packages_that_conflict_are_left_out_saying_why(tmp_path: Path) -> None:
    locked = _locked(tmp_path, "mlflow-skinny==3.17.2\norjson<3", ("orjson>=3.10",))
    assert locked.optional == ()
    assert locked.left_out.startswith("they do not resolve with the model's requirements (uv): ")
    assert "orjson" in locked.left_out
    assert locked.lock.packages["orjson"].startswith("2."), "the model's own pin stands"
