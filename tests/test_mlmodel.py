"""Reading MLmodel: what MLflow 3 writes is understood; anything that is not a servable pyfunc model exits 4.

The MLmodel texts below are copied from models saved with MLflow 3.17.2 (``mlflow.sklearn.save_model`` and
``mlflow.pyfunc.log_model``); ``write_model`` builds such a model directory for the other unit tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow_kserve.errors import NotServableError
from mlflow_kserve.mlmodel import load_yaml, read_mlmodel

SKLEARN_MLMODEL = """\
flavors:
  python_function:
    env:
      conda: conda.yaml
      virtualenv: python_env.yaml
    loader_module: mlflow.sklearn
    model_path: model.skops
    predict_fn: predict
    python_version: {python}
  sklearn:
    code: null
    pickled_model: model.skops
    serialization_format: skops
    sklearn_version: 1.9.1
    skops_trusted_types: null
is_signature_from_type_hint: false
mlflow_version: {mlflow}
model_id: null
model_size_bytes: 10451
model_uuid: 8d07f3865b514e2aa7f509070e7becbf
prompts: null
signature:
  inputs: '[{{"type": "double", "name": "a", "required": true}}, {{"type": "double",
    "name": "b", "required": true}}]'
  outputs: '[{{"type": "tensor", "tensor-spec": {{"dtype": "int64", "shape": [-1]}}}}]'
  params: null
type_hint_from_example: false
utc_time_created: '2026-11-24 21:18:32.747608'
"""

PYFUNC_LOGGED_MLMODEL = """\
artifact_path: /tmp/pp/mlruns/0/models/m-fbeec157150c45f09f543375ddd8e291/artifacts
flavors:
  python_function:
    cloudpickle_version: 3.1.3
    code: null
    env:
      conda: conda.yaml
      virtualenv: python_env.yaml
    loader_module: mlflow.pyfunc.model
    python_model: python_model.pkl
    python_version: 3.11.7
    streamable: false
mlflow_version: 3.17.2
model_id: m-fbeec157150c45f09f543375ddd8e291
model_size_bytes: 1304
model_uuid: m-fbeec157150c45f09f543375ddd8e291
prompts: null
run_id: 609578524d9845cca504b2e9ba8eb54b
utc_time_created: '2026-11-24 21:18:51.850556'
"""

# python_env.yaml as MLflow writes it: build tools plus "-r requirements.txt"
PYTHON_ENV = """\
python: {python}
build_dependencies:
- pip==26.3
- setuptools==84.2.1
- wheel==0.48.0
dependencies:
- -r requirements.txt
"""


def write_model(
    root: Path,
    requirements: str | None = "mlflow==3.17.2\nnumpy==2.4.6\nscikit-learn==1.9.1",  # MLflow writes no final \n
    *,
    mlflow: str = "3.17.2",
    python: str = "3.11.7",
    python_env: bool = True,
    conda: str | None = None,
) -> Path:
    """A model directory shaped like MLflow's: MLmodel, python_env.yaml, requirements.txt (and conda.yaml)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "MLmodel").write_text(SKLEARN_MLMODEL.format(mlflow=mlflow, python=python))
    (root / "model.skops").write_bytes(b"\0")
    if requirements is not None:
        (root / "requirements.txt").write_text(requirements)
        if python_env:
            (root / "python_env.yaml").write_text(PYTHON_ENV.format(python=python))
    if conda is not None:
        (root / "conda.yaml").write_text(conda)
    return root


def test_saved_sklearn_model(tmp_path: Path) -> None:
    info = read_mlmodel(write_model(tmp_path))
    assert info.path == tmp_path
    assert info.mlflow_version == "3.17.2"
    assert info.flavors == ("python_function", "sklearn")
    assert info.loader_module == "mlflow.sklearn"
    assert info.python_version == "3.11.7"
    assert info.env == {"conda": "conda.yaml", "virtualenv": "python_env.yaml"}
    assert info.signature_inputs == [
        {"type": "double", "name": "a", "required": True},
        {"type": "double", "name": "b", "required": True},
    ]
    assert info.model_uuid == "8d07f3865b514e2aa7f509070e7becbf"
    assert info.run_id is None and info.model_id is None


def test_logged_pyfunc_model_keeps_run_and_artifact_path(tmp_path: Path) -> None:
    (tmp_path / "MLmodel").write_text(PYFUNC_LOGGED_MLMODEL)
    info = read_mlmodel(tmp_path)
    assert info.loader_module == "mlflow.pyfunc.model"
    assert info.run_id == "609578524d9845cca504b2e9ba8eb54b"
    assert info.model_id == "m-fbeec157150c45f09f543375ddd8e291"
    assert info.artifact_path is not None and info.artifact_path.endswith("/artifacts")
    assert info.signature_inputs is None


def test_versions_stay_text(tmp_path: Path) -> None:
    """YAML reads ``3.10`` as the float 3.1: versions must stay as written."""
    (tmp_path / "MLmodel").write_text(
        "flavors:\n  python_function:\n    loader_module: m\n    python_version: 3.10\nmlflow_version: 2.10\n"
    )
    info = read_mlmodel(tmp_path)
    assert (info.python_version, info.mlflow_version) == ("3.10", "2.10")
    assert load_yaml("python: 3.10\nn: 3\nnothing: null\n") == {"python": "3.10", "n": 3, "nothing": None}


def test_mlflow_1_env_is_a_conda_file_name(tmp_path: Path) -> None:
    (tmp_path / "MLmodel").write_text(
        "flavors:\n  python_function:\n    env: conda.yaml\n    loader_module: mlflow.sklearn\nmlflow_version: 1.30.1\n"
    )
    assert read_mlmodel(tmp_path).env == {"conda": "conda.yaml"}


def test_missing_mlmodel_exits_4_listing_what_was_fetched(tmp_path: Path) -> None:
    (tmp_path / "model.pkl").write_text("x")
    (tmp_path / "artifacts").mkdir()
    with pytest.raises(NotServableError) as info:
        read_mlmodel(tmp_path)
    message = str(info.value)
    assert info.value.exit_code == 4
    assert "no MLmodel file" in message and "artifacts/, model.pkl" in message
    assert "fix: point the model URI at the directory that holds MLmodel" in message


def test_missing_model_dir_exits_4(tmp_path: Path) -> None:
    with pytest.raises(NotServableError, match="nothing was fetched") as info:
        read_mlmodel(tmp_path / "absent")
    assert info.value.exit_code == 4


def test_garbage_mlmodel_exits_4(tmp_path: Path) -> None:
    (tmp_path / "MLmodel").write_text("flavors: [unclosed\n  : :")
    with pytest.raises(NotServableError) as info:
        read_mlmodel(tmp_path)
    assert info.value.exit_code == 4
    assert "MLmodel is not readable YAML" in str(info.value) and "log the model again" in str(info.value)


def test_binary_mlmodel_exits_4(tmp_path: Path) -> None:
    (tmp_path / "MLmodel").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(NotServableError, match="MLmodel is not UTF-8 text") as info:
        read_mlmodel(tmp_path)
    assert info.value.exit_code == 4


@pytest.mark.parametrize("text", ["just a string\n", "- a\n- list\n", "mlflow_version: 3.17.2\n"])
def test_mlmodel_without_flavors_exits_4(tmp_path: Path, text: str) -> None:
    (tmp_path / "MLmodel").write_text(text)
    with pytest.raises(NotServableError, match=r"no 'flavors' mapping|MLmodel is not a YAML mapping") as info:
        read_mlmodel(tmp_path)
    assert info.value.exit_code == 4


def test_mlmodel_without_python_function_exits_4_naming_the_flavors(tmp_path: Path) -> None:
    (tmp_path / "MLmodel").write_text(
        "flavors:\n  transformers:\n    task: text-generation\n  onnx:\n    onnx_version: 1.17.0\n"
        "mlflow_version: 3.17.2\n"
    )
    with pytest.raises(NotServableError) as info:
        read_mlmodel(tmp_path)
    message = str(info.value)
    assert info.value.exit_code == 4
    assert "no python_function flavor (flavors: transformers, onnx)" in message
    assert "mlflow.pyfunc.PythonModel" in message
