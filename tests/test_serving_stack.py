"""The serving-stack table (serving_stack.toml): per backend, which rows serve a model of each MLflow version on
each serving interpreter, and what they add to the model's packages (nothing for the mlflow backend)."""

from __future__ import annotations

import pytest
from mlflow_kserve.errors import ResolveError
from mlflow_kserve.serving_stack import NoStack, ServingStack, load_table, select_stack

UVLOOP = "uvloop 0.22+ kills MLServer workers: 'no current event loop' (SeldonIO/MLServer#2286)"
UVICORN = (
    "uvicorn 0.29+ re-raises the stop signal MLServer hands its REST and metrics servers, and MLServer runs its whole "
    "stop again for each: one SIGTERM stopped it five times, racing itself (tracebacks, repeated shutdown lines)"
)
SETUPTOOLS = "these MLflows keep protobuf<5, whose opentelemetry imports pkg_resources (gone in setuptools 82)"
MLSERVER_PYTHON = ">=3.9,<3.13"


def test_table_is_design_md() -> None:
    table = load_table()
    assert table[:3] == [
        ServingStack(
            "mlserver", ">=2.19", MLSERVER_PYTHON,
            ("mlserver==1.7.1", "mlserver-mlflow==1.7.1", "uvloop<0.22", "uvicorn<0.29"), (UVLOOP, UVICORN),
        ),
        ServingStack(
            "mlserver", ">=2.15,<2.19", MLSERVER_PYTHON,
            ("mlserver==1.6.1", "mlserver-mlflow==1.6.1", "uvloop<0.22", "uvicorn<0.29"), (UVLOOP, UVICORN),
        ),
        ServingStack(
            "mlserver", ">=2.10,<2.15", MLSERVER_PYTHON,
            ("mlserver==1.6.1", "mlserver-mlflow==1.6.1", "uvloop<0.22", "uvicorn<0.29", "setuptools<82"),
            (UVLOOP, UVICORN, SETUPTOOLS),
        ),
    ]  # fmt: skip
    before_311, since_311 = table[3:]
    assert (before_311.backend, before_311.mlflow, before_311.requirements) == ("mlflow", ">=2.21,<3.11", ())
    assert before_311.constraints == ("starlette<1",), "its scoring server uses app.route, gone in Starlette 1.0"
    assert (since_311.backend, since_311.mlflow, since_311.requirements, since_311.constraints) == (
        "mlflow", ">=3.11", (), ()
    )  # fmt: skip
    assert "mlflow/mlflow#14307" in before_311.reasons[0]
    assert len(table) == 5


def test_load_table_returns_a_fresh_list() -> None:
    table = load_table()
    table.clear()
    assert len(load_table()) == 5


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
def test_select_mlserver_stack(version: str, row: str) -> None:
    stack = select_stack("mlserver", version, "3.11.7")
    assert stack.mlflow == row
    mlserver = "1.7.1" if row == ">=2.19" else "1.6.1"
    assert stack.requirements[:4] == (f"mlserver=={mlserver}", f"mlserver-mlflow=={mlserver}", "uvloop<0.22",
                                      "uvicorn<0.29")  # fmt: skip
    assert ("setuptools<82" in stack.requirements) == (row == ">=2.10,<2.15")
    assert len(stack.reasons) == len(stack.requirements) - 2  # one reason per extra pin


@pytest.mark.parametrize("version", ["2.9.4", "2.9.0", "1.30.1", "0.9.1"])
def test_mlflow_no_mlserver_row_serves_exits_6_naming_supported_versions(version: str) -> None:
    with pytest.raises(NoStack) as info:
        select_stack("mlserver", version, "3.11.7")
    assert info.value.exit_code == 6
    assert info.value.reason == (
        f"MLServer serves no model logged with MLflow {version} (it serves MLflow >=2.19; >=2.15,<2.19; >=2.10,<2.15)"
    )


@pytest.mark.parametrize("version", ["2.21.0", "2.22.4", "3.0.0rc2", "3.17.2"])
def test_the_mlflow_backend_serves_mlflow_from_2_21_and_requires_nothing(version: str) -> None:
    stack = select_stack("mlflow", version, "3.13.0")
    assert stack.requirements == () and stack.optional == ("orjson",) and stack.grpc == ("grpcio",)
    assert stack.describe() == (
        "MLflow's scoring server (adds no required package; optional orjson)"
        if version == "3.17.2"
        else "MLflow's scoring server (adds no required package; optional orjson; constraint starlette<1)"
    )


@pytest.mark.parametrize("version", ["2.20.1", "2.19.0", "2.16.2", "2.13.2"])
def test_mlflow_before_2_21_has_no_fastapi_scoring_server(version: str) -> None:
    with pytest.raises(NoStack) as info:
        select_stack("mlflow", version, "3.11.7")
    assert info.value.exit_code == 6
    assert info.value.reason == (
        f"MLflow {version} has no FastAPI scoring server (the mlflow backend serves MLflow >=2.21,<3.11; >=3.11)"
    )


def test_mlflow_version_that_is_not_a_version_exits_6() -> None:
    with pytest.raises(ResolveError, match="'latest' is not a version") as info:
        select_stack("mlflow", "latest", "3.11.7")
    assert info.value.exit_code == 6


@pytest.mark.parametrize("interpreter", ["3.10.14", "3.11.7", "3.12.8"])
def test_mlserver_pythons(interpreter: str) -> None:
    assert select_stack("mlserver", "3.17.2", interpreter).mlflow == ">=2.19"


@pytest.mark.parametrize("interpreter", ["3.13.0", "3.13.1", "3.14.0"])
def test_python_313_and_later_have_no_mlserver(interpreter: str) -> None:
    with pytest.raises(NoStack) as info:
        select_stack("mlserver", "3.17.2", interpreter)
    assert info.value.exit_code == 6
    assert info.value.reason == f"MLServer supports Python >=3.9,<3.13, the serving interpreter is {interpreter}"
    assert select_stack("mlflow", "3.17.2", interpreter).backend == "mlflow"
