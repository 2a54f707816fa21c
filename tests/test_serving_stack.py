"""The serving-stack table (serving_stack.toml): which MLServer packages serve a model of each MLflow version."""

from __future__ import annotations

import pytest
from mlflow_kserve.errors import ConfigError, ResolveError
from mlflow_kserve.serving_stack import ServingStack, load_table, select_stack

UVLOOP = "uvloop 0.22+ kills MLServer workers: 'no current event loop' (SeldonIO/MLServer#2286)"
SETUPTOOLS = "these MLflows keep protobuf<5, whose opentelemetry imports pkg_resources (gone in setuptools 82)"


def test_table_is_design_md() -> None:
    assert load_table() == [
        ServingStack(">=2.19", ("mlserver==1.7.1", "mlserver-mlflow==1.7.1", "uvloop<0.22"), (UVLOOP,), ">=3.9,<3.13"),
        ServingStack(
            ">=2.15,<2.19", ("mlserver==1.6.1", "mlserver-mlflow==1.6.1", "uvloop<0.22"), (UVLOOP,), ">=3.9,<3.13"
        ),
        ServingStack(
            ">=2.10,<2.15",
            ("mlserver==1.6.1", "mlserver-mlflow==1.6.1", "uvloop<0.22", "setuptools<82"),
            (UVLOOP, SETUPTOOLS),
            ">=3.9,<3.13",
        ),
    ]


def test_load_table_returns_a_fresh_list() -> None:
    table = load_table()
    table.clear()
    assert len(load_table()) == 3


@pytest.mark.parametrize(
    ("version", "row"),
    [
        ("3.17.2", ">=2.19"),
        ("3.0.0rc2", ">=2.19"),
        ("3.0.0", ">=2.19"),
        ("2.22.4", ">=2.19"),
        ("2.19.0", ">=2.19"),
        ("2.18.0", ">=2.15,<2.19"),
        ("2.15.1", ">=2.15,<2.19"),
        ("2.14.3", ">=2.10,<2.15"),
        ("2.10.0", ">=2.10,<2.15"),
    ],
)
def test_select_stack(version: str, row: str) -> None:
    stack = select_stack(version, "3.11.7")
    assert stack.mlflow == row
    mlserver = "1.7.1" if row == ">=2.19" else "1.6.1"
    assert stack.requirements[:3] == (f"mlserver=={mlserver}", f"mlserver-mlflow=={mlserver}", "uvloop<0.22")
    assert ("setuptools<82" in stack.requirements) == (row == ">=2.10,<2.15")
    assert len(stack.reasons) == len(stack.requirements) - 2  # one reason per extra pin


@pytest.mark.parametrize("version", ["2.9.4", "2.9.0", "1.30.1", "0.9.1"])
def test_unsupported_mlflow_exits_6_naming_supported_versions(version: str) -> None:
    with pytest.raises(ResolveError) as info:
        select_stack(version, "3.11.7")
    assert info.value.exit_code == 6
    assert str(info.value) == (
        f"no serving stack for a model logged with MLflow {version}; supported MLflow versions: "
        ">=2.19; >=2.15,<2.19; >=2.10,<2.15; fix: log the model again with a supported MLflow version (2.10 or newer)"
    )


def test_mlflow_version_that_is_not_a_version_exits_6() -> None:
    with pytest.raises(ResolveError, match="'latest' is not a version") as info:
        select_stack("latest")
    assert info.value.exit_code == 6


@pytest.mark.parametrize("interpreter", ["3.10.14", "3.11.7", "3.12.8"])
def test_mlserver_pythons(interpreter: str) -> None:
    assert select_stack("3.17.2", interpreter).mlflow == ">=2.19"


def test_python_313_has_no_mlserver() -> None:
    with pytest.raises(ConfigError) as info:
        select_stack("3.17.2", "3.13.1")
    assert info.value.exit_code == 2
    assert "MLServer supports Python >=3.9,<3.13, the serving interpreter is 3.13.1" in str(info.value)
    assert "Python 3.10, 3.11 or 3.12 (chart value pythonVersion)" in str(info.value)
