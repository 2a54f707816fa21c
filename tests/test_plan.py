"""Step 2, the plan: the model's requirements after the policy, its MLflow pin, the serving backends whose table
rows fit that MLflow and the interpreter, and the operator's extras, from model directories written like MLflow
writes them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mlflow_kserve.errors import ConfigError, NotServableError, PolicyError, ResolveError
from mlflow_kserve.plan import Plan, make_plan
from mlflow_kserve.serving_stack import ServingStack
from mlflow_kserve.settings import Settings
from test_mlmodel import write_model

STACK_3 = ("mlserver==1.7.1", "mlserver-mlflow==1.7.1", "uvloop<0.22")


def plan(root: Path, interpreter: str = "3.11.7", **settings: Any) -> Plan:
    return make_plan(root, Settings.from_options(model_uri=str(root), **settings), interpreter)


def first(result: Plan) -> ServingStack:
    """auto's first choice (the lock step falls back to the next one on a conflict)."""
    return result.backends.stacks[0]


def mlserver_row(result: Plan) -> ServingStack:
    return next(s for s in result.backends.stacks if s.backend == "mlserver")


def test_python_env_yaml_model(tmp_path: Path) -> None:
    result = plan(write_model(tmp_path))
    assert result.env.source == "python_env.yaml"
    assert result.mlflow_version == "3.17.2"
    assert result.model_requirements == ("mlflow==3.17.2", "numpy==2.4.6", "scikit-learn==1.9.1")
    assert [(s.backend, s.mlflow) for s in result.backends.stacks] == [("mlflow", ">=3.11"), ("mlserver", ">=2.19")]
    assert result.requirements(first(result)) == result.model_requirements, "mlflow adds nothing"
    assert result.requirements(mlserver_row(result)) == (*result.model_requirements, *STACK_3)
    assert result.warnings == () and result.constraints == () and result.index_options == ()


def test_requirements_txt_model_pinned_mlflow_wins_over_mlmodel(tmp_path: Path) -> None:
    root = write_model(tmp_path, "mlflow==2.16.2\npandas<3\n", mlflow="2.22.0", python_env=False)
    result = plan(root)
    assert result.env.source == "requirements.txt"
    assert result.mlflow_version == "2.16.2"
    assert first(result).requirements[0] == "mlserver==1.6.1"
    assert result.backends.ruled_out == (("mlflow", "MLflow 2.16.2 has no FastAPI scoring server (the mlflow "
                                                    "backend serves MLflow >=2.21,<3.11; >=3.11)"),)  # fmt: skip


def test_conda_model_warns_about_conda_only_packages(tmp_path: Path) -> None:
    conda = "dependencies:\n- python=3.11.7\n- pip<=24.0\n- cudatoolkit=11.8\n- pip:\n  - mlflow==2.13.2\n"
    result = plan(write_model(tmp_path, None, mlflow="2.13.2", conda=conda))
    assert result.env.source == "conda.yaml"
    assert result.model_requirements == ("mlflow==2.13.2",)
    assert first(result).requirements[-1] == "setuptools<82"
    assert result.warnings == (
        "conda-only packages in conda.yaml are not installed (pip environment): cudatoolkit=11.8",
    )


def test_model_without_env_files_gets_the_mlflow_pin(tmp_path: Path) -> None:
    result = plan(write_model(tmp_path, None, mlflow="2.16.2"))
    assert result.env.source == "none"
    assert result.model_requirements == ("mlflow==2.16.2",)
    assert first(result).mlflow == ">=2.15,<2.19"


def test_model_without_mlflow_requirement_gets_the_mlflow_pin(tmp_path: Path) -> None:
    result = plan(write_model(tmp_path, "scikit-learn==1.5.2\n", mlflow="2.19.0"))
    assert result.model_requirements == ("scikit-learn==1.5.2", "mlflow==2.19.0")


@pytest.mark.parametrize(
    ("line", "kept"),
    [
        ("mlflow>=2.0", "mlflow==3.17.2,>=2.0"),
        ("mlflow[gateway] ; python_version >= '3.9'", 'mlflow[gateway]==3.17.2; python_version >= "3.9"'),
        ("mlflow-skinny<4", "mlflow-skinny<4,==3.17.2"),
    ],
)
def test_loose_mlflow_requirement_is_narrowed_to_the_logging_version(tmp_path: Path, line: str, kept: str) -> None:
    result = plan(write_model(tmp_path, f"{line}\npandas\n"))
    assert result.mlflow_version == "3.17.2"
    assert result.model_requirements == (kept, "pandas")


def test_mlflow_requirement_excluding_the_logging_version_warns(tmp_path: Path) -> None:
    result = plan(write_model(tmp_path, "mlflow<3\n", mlflow="3.17.2"))
    assert result.model_requirements == ("mlflow<3",)
    assert result.warnings == (
        "the model requires 'mlflow<3' but was logged with MLflow 3.17.2; "
        "the serving stack is chosen for MLflow 3.17.2",
    )


def test_model_with_no_mlflow_version_at_all_exits_4(tmp_path: Path) -> None:
    root = write_model(tmp_path, "pandas\n")
    (root / "MLmodel").write_text((root / "MLmodel").read_text().replace("mlflow_version: 3.17.2\n", ""))
    with pytest.raises(NotServableError, match="names no MLflow version") as info:
        plan(root)
    assert info.value.exit_code == 4


@pytest.mark.parametrize(("pin", "mlmodel"), [("mlflow==2.9.4", "2.9.4"), (None, "1.30.1")])
def test_unsupported_mlflow_exits_6(tmp_path: Path, pin: str | None, mlmodel: str) -> None:
    with pytest.raises(ResolveError) as info:
        plan(write_model(tmp_path, pin, mlflow=mlmodel))
    assert info.value.exit_code == 6
    assert f"MLflow {mlmodel} (it serves MLflow >=2.19; >=2.15,<2.19; >=2.10,<2.15)" in str(info.value)
    assert f"MLflow {mlmodel} has no FastAPI scoring server" in str(info.value)


def test_python_313_interpreter_plans_the_mlflow_backend_only(tmp_path: Path) -> None:
    result = plan(write_model(tmp_path, python="3.13.1"), "3.13.1")
    assert [s.backend for s in result.backends.stacks] == ["mlflow"]
    assert result.backends.ruled_out == (
        ("mlserver", "MLServer supports Python >=3.9,<3.13, the serving interpreter is 3.13.1"),
    )
    with pytest.raises(ResolveError, match=r"--backend mlserver: MLServer supports Python >=3\.9,<3\.13") as info:
        plan(write_model(tmp_path / "again", python="3.13.1"), "3.13.1", backend="mlserver")
    assert info.value.exit_code == 6
    assert "--backend mlflow" in str(info.value)


def test_python_policy_warn_and_strict(tmp_path: Path) -> None:
    root = write_model(tmp_path, python="3.10.14")
    assert plan(root).warnings == (
        "the model was logged with Python 3.10.14, the serving interpreter is 3.11.7 (--python-policy warn)",
    )
    with pytest.raises(PolicyError, match="pythonVersion") as info:
        plan(root, python_policy="strict")
    assert info.value.exit_code == 5
    assert plan(root, "3.10.2", python_policy="strict").warnings == ()


def test_policy_violation_exits_5(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"requirements\.txt:2: .* --allow index-options") as info:
        plan(write_model(tmp_path, "mlflow==3.17.2\n--extra-index-url https://x.example/simple\n"))
    assert info.value.exit_code == 5


def test_allowed_index_options_and_external_include(tmp_path: Path) -> None:
    (tmp_path / "shared.txt").write_text("requests<3\n")
    root = write_model(tmp_path / "model", "mlflow==3.17.2\n-i https://x.example/simple\n-r ../shared.txt\n")
    result = plan(root, allow=("index-options", "external-include"))
    assert result.index_options == ("--index-url=https://x.example/simple",)
    assert result.model_requirements == ("mlflow==3.17.2", "requests<3")


def test_operator_extras_and_constraints(tmp_path: Path) -> None:
    root = write_model(tmp_path, "mlflow==3.17.2\nnumpy==2.4.6\n-c pins.txt\n")
    (root / "pins.txt").write_text("scipy<1.15\n")
    result = plan(
        root, extra_requirement=("prometheus-client<1", "numpy==2.4.6", "uvloop<0.22"), constraint=("numpy<3",)
    )
    assert result.extra_requirements == ("prometheus-client<1", "numpy==2.4.6", "uvloop<0.22")
    assert result.requirements(mlserver_row(result)) == (
        "mlflow==3.17.2", "numpy==2.4.6", *STACK_3, "prometheus-client<1"
    )  # fmt: skip
    assert result.requirements(first(result)) == (
        "mlflow==3.17.2", "numpy==2.4.6", "prometheus-client<1", "uvloop<0.22"
    ), "the mlflow backend: the model's requirements and the operator's extras, nothing else"  # fmt: skip
    assert result.constraints == ("scipy<1.15", "numpy<3")


@pytest.mark.parametrize(("flag", "value"), [("extra_requirement", "numpy<<2"), ("constraint", "scikit learn")])
def test_bad_operator_values_exit_2_naming_value_and_flag(tmp_path: Path, flag: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        plan(write_model(tmp_path), **{flag: (value,)})
    option = "--" + flag.replace("_", "-")
    assert info.value.exit_code == 2
    assert str(info.value).startswith(f"{option} {value!r} is not a valid requirement")
    assert str(info.value).endswith(f"fix: fix the value of {option}")


def test_to_dict_is_json(tmp_path: Path) -> None:
    result = plan(write_model(tmp_path, python="3.10.14"), extra_requirement=("prometheus-client<1",))
    data = json.loads(json.dumps(result.to_dict()))
    assert data["mlflow_version"] == "3.17.2"
    assert data["env_source"] == "python_env.yaml"
    assert data["python"] == {"model": "3.10.14", "interpreter": "3.11.7"}
    assert data["model"]["flavors"] == ["python_function", "sklearn"]
    assert data["model"]["loader_module"] == "mlflow.sklearn"
    assert data["backends"]["requested"] == "auto"
    assert [c["backend"] for c in data["backends"]["candidates"]] == ["mlflow", "mlserver"]
    assert data["backends"]["candidates"][1]["requirements"] == list(STACK_3)
    assert data["extra_requirements"] == ["prometheus-client<1"]
    assert len(data["warnings"]) == 1
