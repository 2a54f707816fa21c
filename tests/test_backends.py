"""auto's rule (backends.py): the mlflow backend whenever the model's MLflow has the FastAPI scoring server (>= 2.21)
and the model's own set resolves, else MLServer when its row fits the model's MLflow and the interpreter and the set
resolves with the model's pins, else exit 6 giving both reasons. An explicit --backend mlserver keeps MLServer.
The table part is checked directly; the resolution part with real uv resolutions against the index (protobuf 7 is
what current uv-project models pin, and MLServer needs < 7)."""

from __future__ import annotations

import pytest
from mlflow_kserve.backends import candidates, choose
from mlflow_kserve.errors import ResolveError
from mlflow_kserve.lock import Lock, LockRequest, resolve
from mlflow_kserve.serving_stack import ServingStack

PYTHON_RULE = "MLServer supports Python >=3.9,<3.13, the serving interpreter is 3.13.0"
NO_FASTAPI = "MLflow 2.16.2 has no FastAPI scoring server (the mlflow backend serves MLflow >=2.21,<3.11; >=3.11)"


def test_auto_prefers_mlflow_then_mlserver() -> None:
    found = candidates("auto", "3.17.2", "3.11.7")
    assert [s.backend for s in found.stacks] == ["mlflow", "mlserver"]
    assert found.ruled_out == ()


def test_auto_on_python_313_has_only_the_mlflow_backend() -> None:
    found = candidates("auto", "3.17.2", "3.13.0")
    assert [s.backend for s in found.stacks] == ["mlflow"]
    assert found.ruled_out == (("mlserver", PYTHON_RULE),)


def test_auto_for_mlflow_before_2_21_has_only_mlserver() -> None:
    found = candidates("auto", "2.16.2", "3.11.7")
    assert [s.backend for s in found.stacks] == ["mlserver"]
    assert found.ruled_out == (("mlflow", NO_FASTAPI),)


def test_auto_exits_6_giving_both_reasons_when_no_row_fits() -> None:
    with pytest.raises(ResolveError) as info:
        candidates("auto", "2.16.2", "3.13.0")
    assert info.value.exit_code == 6
    message = str(info.value)
    assert message.startswith(f"no serving backend fits this model: MLflow's scoring server: {NO_FASTAPI}; ")
    assert f"MLServer: {PYTHON_RULE}" in message


def test_explicit_mlserver_on_python_313_exits_6_naming_the_mlflow_backend() -> None:
    with pytest.raises(ResolveError) as info:
        candidates("mlserver", "3.17.2", "3.13.0")
    assert info.value.exit_code == 6
    assert str(info.value).startswith(f"--backend mlserver: {PYTHON_RULE}; fix: ")
    assert "--backend mlflow serves models of MLflow >= 2.21" in str(info.value)


def test_explicit_mlflow_for_mlflow_2_16_exits_6_naming_mlserver() -> None:
    with pytest.raises(ResolveError) as info:
        candidates("mlflow", "2.16.2", "3.11.7")
    assert info.value.exit_code == 6
    assert str(info.value).startswith(f"--backend mlflow: {NO_FASTAPI}; fix: ")
    assert "--backend mlserver (or auto)" in str(info.value)


def _locker(*model: str):
    """The lock step for a model requiring ``model``: a real uv resolution, with each stack's packages."""
    tried: list[str] = []

    def lock(stack: ServingStack) -> Lock:
        tried.append(stack.backend)
        return resolve(LockRequest((*model, *stack.requirements)), "uv")

    return lock, tried


def test_auto_takes_the_mlflow_backend_for_a_model_mlserver_also_resolves_with() -> None:
    lock, tried = _locker("mlflow-skinny==3.17.2", "protobuf==6.33.6")
    chosen, result = choose(candidates("auto", "3.17.2", "3.11.7"), lock)
    assert chosen.backend == "mlflow" and tried == ["mlflow"], "MLServer is not even tried"
    assert "mlserver" not in result.packages and result.packages["protobuf"] == "6.33.6"
    assert chosen.reason == (
        "auto: MLflow 3.17.2 has the FastAPI scoring server (>= 2.21), so its own scoring server serves MLflow 3.17.2 "
        "on Python 3.11.7: the mlflow backend, preferred over MLServer"
    )


def test_explicit_mlserver_gets_mlserver_where_it_resolves() -> None:
    lock, tried = _locker("mlflow-skinny==3.17.2", "protobuf==6.33.6")
    chosen, result = choose(candidates("mlserver", "3.17.2", "3.11.7"), lock)
    assert chosen.backend == "mlserver" and tried == ["mlserver"]
    assert result.packages["mlserver"] == "1.7.1" and result.packages["protobuf"] == "6.33.6"
    assert chosen.reason == "--backend mlserver (requested)"


def test_auto_takes_mlserver_for_mlflow_before_2_21_saying_why() -> None:
    lock, tried = _locker("mlflow-skinny==2.16.2", "setuptools<82")
    chosen, result = choose(candidates("auto", "2.16.2", "3.11.7"), lock)
    assert chosen.backend == "mlserver" and tried == ["mlserver"]
    assert result.packages["mlserver"] == "1.6.1"
    assert chosen.reason == (
        f"auto: not MLflow's scoring server: {NO_FASTAPI}; MLServer serves MLflow 2.16.2 on Python 3.11.7 and "
        "resolves with the model's requirements"
    )


def test_auto_takes_mlflow_when_the_model_pins_protobuf_7() -> None:
    lock, tried = _locker("mlflow-skinny==3.17.2", "protobuf==7.36.2")
    chosen, result = choose(candidates("auto", "3.17.2", "3.11.7"), lock)
    assert tried == ["mlflow"]
    assert chosen.backend == "mlflow"
    assert "mlserver" not in result.packages and result.packages["protobuf"] == "7.36.2", "the model's pin stands"


def test_explicit_mlserver_keeps_exit_6_and_names_the_mlflow_backend() -> None:
    lock, tried = _locker("mlflow-skinny==3.17.2", "protobuf==7.36.2")
    with pytest.raises(ResolveError) as info:
        choose(candidates("mlserver", "3.17.2", "3.11.7"), lock)
    assert tried == ["mlserver"]
    assert info.value.exit_code == 6
    message = str(info.value)
    assert message.startswith("--backend mlserver: the model's requirements conflict with MLServer's")
    assert "protobuf" in message and "--backend mlflow serves models of MLflow >= 2.21" in message


@pytest.mark.parametrize("requested", ["auto", "mlflow"])
def test_a_model_whose_own_pins_conflict_exits_6(requested: str) -> None:
    lock, tried = _locker("mlflow-skinny==3.17.2", "protobuf==7.36.2", "opentelemetry-proto<1.9")
    with pytest.raises(ResolveError) as info:
        choose(candidates(requested, "3.17.2", "3.11.7"), lock)
    assert info.value.exit_code == 6
    message = str(info.value)
    assert "the model's own requirements cannot be resolved (uv): " in message
    if requested == "auto":
        assert tried == ["mlflow", "mlserver"]
        assert message.startswith(
            "no serving backend fits this model: MLflow's scoring server: the model's own requirements cannot be "
        )
        assert "MLServer: the model's requirements conflict with MLServer's" in message
    else:
        assert tried == ["mlflow"]
        assert message.startswith("--backend mlflow: ")
        assert "--backend mlserver" not in message, "MLServer only adds to a set that already conflicts"
