"""Plan parsing (each env-file form) and each dependency-policy rule, on model dirs written like MLflow does."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow_kserve.errors import ConfigError, NotServableError, PolicyError, ResolveError
from mlflow_kserve.mlmodel import read_mlmodel
from mlflow_kserve.plan import make_plan
from mlflow_kserve.requirements import read_model_env
from mlflow_kserve.serving_stack import select_stack
from mlflow_kserve.settings import Settings

MLMODEL = """\
flavors:
  python_function:
    env:
      conda: conda.yaml
      virtualenv: python_env.yaml
    loader_module: mlflow.sklearn
    model_path: model.pkl
    predict_fn: predict
    python_version: 3.11.7
  sklearn:
    pickled_model: model.pkl
    serialization_format: cloudpickle
    sklearn_version: 1.5.2
mlflow_version: {mlflow}
model_uuid: 0f3c
utc_time_created: '2026-11-24 10:00:00.000000'
"""
PYTHON_ENV = "python: {python}\nbuild_dependencies:\n- pip==24.0\ndependencies:\n- -r requirements.txt\n"


def model(
    tmp_path: Path,
    requirements: str | None = "mlflow==3.6.0\nscikit-learn==1.5.2\n",
    *,
    mlflow: str = "3.6.0",
    python: str = "3.11.7",
    python_env: bool = True,
    conda: str | None = None,
) -> Path:
    root = tmp_path / "model"
    root.mkdir()
    (root / "MLmodel").write_text(MLMODEL.format(mlflow=mlflow))
    if requirements is not None:
        (root / "requirements.txt").write_text(requirements)
    if python_env and requirements is not None:
        (root / "python_env.yaml").write_text(PYTHON_ENV.format(python=python))
    if conda is not None:
        (root / "conda.yaml").write_text(conda)
    return root


def plan(root: Path, interpreter: str = "3.11.7", **settings: object):
    return make_plan(root, Settings.from_options(model_uri=str(root), **settings), interpreter)


# -- env-file forms ------------------------------------------------------------------------------------


def test_python_env_yaml_with_requirements_txt(tmp_path: Path) -> None:
    result = plan(model(tmp_path))
    assert result.env.source == "python_env.yaml"
    assert result.env.python_version == "3.11.7"
    assert result.model_requirements == ("mlflow==3.6.0", "scikit-learn==1.5.2")
    assert result.requirements()[-3:] == ("mlserver==1.7.1", "mlserver-mlflow==1.7.1", "uvloop<0.22")
    assert result.env.lines[0].source == "requirements.txt:1"


def test_requirements_txt_only(tmp_path: Path) -> None:
    result = plan(model(tmp_path, "# a comment\nmlflow==2.22.0  # pinned\nnumpy<2 ; python_version >= '3.9'\n",
                        python_env=False, mlflow="2.22.0"))  # fmt: skip
    assert result.env.source == "requirements.txt"
    assert result.model_requirements == ("mlflow==2.22.0", "numpy<2 ; python_version >= '3.9'")
    assert result.mlflow_version == "2.22.0"


def test_conda_yaml_pip_section_warns_about_conda_only_packages(tmp_path: Path) -> None:
    conda = "channels: [conda-forge]\ndependencies:\n- python=3.11.7\n- pip<=24.0\n- cudatoolkit=11.8\n" \
            "- pip:\n  - mlflow==3.6.0\n  - pandas==2.2.3\nname: mlflow-env\n"  # fmt: skip
    result = plan(model(tmp_path, None, conda=conda))
    assert result.env.source == "conda.yaml"
    assert result.model_requirements == ("mlflow==3.6.0", "pandas==2.2.3")
    assert result.env.python_version == "3.11.7"
    assert any("cudatoolkit=11.8" in w for w in result.warnings)


def test_no_env_files_pins_mlflow_from_mlmodel(tmp_path: Path) -> None:
    result = plan(model(tmp_path, None, mlflow="2.16.2"))
    assert result.env.source == "none"
    assert result.model_requirements == ("mlflow==2.16.2",)
    assert "mlserver==1.6.1" in result.stack.requirements


def test_nested_includes_inside_the_model_and_continuations(tmp_path: Path) -> None:
    root = model(tmp_path, "mlflow==3.6.0\n-r extra/more.txt\n-c constraints.txt\n")
    (root / "extra").mkdir()
    (root / "extra" / "more.txt").write_text("pandas>=2,\\\n  <3\n")
    (root / "constraints.txt").write_text("numpy<2.3\n")
    result = plan(root)
    assert result.model_requirements == ("mlflow==3.6.0", "pandas>=2, <3")
    assert result.constraints == ("numpy<2.3",)


def test_invalid_requirement_line_is_not_servable(tmp_path: Path) -> None:
    with pytest.raises(NotServableError) as info:
        plan(model(tmp_path, "mlflow==3.6.0\nscikit learn ===\n"))
    assert info.value.exit_code == 4 and "requirements.txt:2" in str(info.value)


# -- MLmodel -------------------------------------------------------------------------------------------


def test_missing_mlmodel(tmp_path: Path) -> None:
    (tmp_path / "model.pkl").write_text("x")
    with pytest.raises(NotServableError) as info:
        read_mlmodel(tmp_path)
    assert info.value.exit_code == 4 and "model.pkl" in str(info.value)


def test_garbage_mlmodel(tmp_path: Path) -> None:
    (tmp_path / "MLmodel").write_text("flavors: [unclosed\n  : :")
    with pytest.raises(NotServableError, match="not readable YAML"):
        read_mlmodel(tmp_path)


def test_mlmodel_without_pyfunc(tmp_path: Path) -> None:
    (tmp_path / "MLmodel").write_text("flavors:\n  transformers: {}\nmlflow_version: 3.6.0\n")
    with pytest.raises(NotServableError, match=r"no python_function flavor.*transformers"):
        read_mlmodel(tmp_path)


# -- policy rules --------------------------------------------------------------------------------------

RULE_LINES = [
    ("--index-url https://mirror.example/simple", "index-options"),
    ("-i https://mirror.example/simple", "index-options"),
    ("--extra-index-url https://mirror.example/simple", "index-options"),
    ("-f https://mirror.example/wheels", "index-options"),
    ("--find-links=/wheels", "index-options"),
    ("--trusted-host mirror.example", "index-options"),
    ("-e ./src", "editable"),
    ("git+https://github.com/org/pkg.git@v1#egg=pkg", "vcs"),
    ("pkg @ git+https://github.com/org/pkg.git", "vcs"),
    ("pkg @ https://files.example/pkg-1.0-py3-none-any.whl", "url"),
    ("https://files.example/pkg-1.0.tar.gz", "url"),
    ("./wheels/pkg-1.0-py3-none-any.whl", "local-path"),
    ("/opt/pkg", "local-path"),
    ("pkg @ file:///opt/pkg", "local-path"),
    ("-r ../../outside.txt", "external-include"),
]


@pytest.mark.parametrize(("line", "allowance"), RULE_LINES)
def test_policy_rejects_each_rule_naming_line_and_flag(tmp_path: Path, line: str, allowance: str) -> None:
    with pytest.raises(PolicyError) as info:
        plan(model(tmp_path, f"mlflow==3.6.0\n{line}\n"))
    message = str(info.value)
    assert info.value.exit_code == 5
    assert "requirements.txt:2" in message
    assert f"--allow {allowance}" in message


@pytest.mark.parametrize(("line", "allowance"), RULE_LINES)
def test_policy_allowance_lets_the_line_through(tmp_path: Path, line: str, allowance: str) -> None:
    if allowance == "external-include":
        (tmp_path.parent / "outside.txt").write_text("requests\n")
    result = plan(model(tmp_path, f"mlflow==3.6.0\n{line}\n"), allow=(allowance,))
    if allowance == "index-options":
        assert result.index_options == (line,)
    elif allowance == "external-include":
        assert "requests" in result.model_requirements
    else:
        assert len(result.model_requirements) == 2


def test_ignored_options_warn(tmp_path: Path) -> None:
    result = plan(model(tmp_path, "mlflow==3.6.0\n--prefer-binary\n"))
    assert any("--prefer-binary" in w for w in result.warnings)


def test_python_policy_warn_and_strict(tmp_path: Path) -> None:
    root = model(tmp_path, python="3.10.14")
    assert any("Python 3.10.14" in w for w in plan(root).warnings)
    with pytest.raises(PolicyError) as info:
        plan(root, python_policy="strict")
    assert info.value.exit_code == 5 and "pythonVersion" in str(info.value)
    assert not [w for w in plan(root, "3.10.2", python_policy="strict").warnings if "Python" in w]


def test_operator_values_are_validated(tmp_path: Path) -> None:
    root = model(tmp_path)
    result = plan(root, extra_requirement=("prometheus-client<1",), constraint=("numpy<2.3",))
    assert result.requirements()[-1] == "prometheus-client<1"
    assert result.constraints == ("numpy<2.3",)
    with pytest.raises(ConfigError, match="--constraint"):
        plan(root, constraint=("numpy<<2",))


# -- serving stack table -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "mlserver"),
    [("3.17.2", "1.7.1"), ("3.0.0", "1.7.1"), ("2.22.4", "1.7.1"), ("2.19.0", "1.7.1"), ("2.18.0", "1.6.1"),
     ("2.15.1", "1.6.1"), ("2.14.3", "1.6.1"), ("2.10.0", "1.6.1")],
)  # fmt: skip
def test_stack_selection(version: str, mlserver: str) -> None:
    stack = select_stack(version, "3.11.7")
    assert f"mlserver=={mlserver}" in stack.requirements
    assert f"mlserver-mlflow=={mlserver}" in stack.requirements
    assert "uvloop<0.22" in stack.requirements
    assert ("setuptools<82" in stack.requirements) == version.startswith(("2.10", "2.11", "2.12", "2.13", "2.14"))


@pytest.mark.parametrize("version", ["2.9.4", "1.30.1"])
def test_unsupported_mlflow_exits_6_naming_supported_versions(version: str) -> None:
    with pytest.raises(ResolveError) as info:
        select_stack(version)
    assert info.value.exit_code == 6 and ">=2.19" in str(info.value) and version in str(info.value)


def test_python_313_has_no_mlserver() -> None:
    with pytest.raises(ConfigError, match=r"3\.13"):
        select_stack("3.6.0", "3.13.1")


def test_env_reader_records_sources(tmp_path: Path) -> None:
    root = model(tmp_path)
    env = read_model_env(root, read_mlmodel(root))
    assert [line.kind for line in env.lines] == ["requirement", "requirement"]
