"""The lock step against the real package index: real uv and real pip-tools resolutions."""

from __future__ import annotations

import socket
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from mlflow_kserve.errors import InstallError, ResolveError
from mlflow_kserve.index import IndexConfig
from mlflow_kserve.lock import Lock, LockRequest, resolve
from support.pyindex import LocalIndex, build_wheel, serve


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.network
@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_lock_pins_every_package_with_hashes(installer: str) -> None:
    lock = resolve(LockRequest(("packaging==24.2", "six"), constraints=("six<1.17",)), installer)
    assert lock.packages["packaging"] == "24.2"
    assert lock.packages["six"].startswith("1.16")
    assert "--hash=sha256:" in lock.text


@pytest.mark.network
@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_conflict_with_the_serving_stack_exits_6_naming_both_sides(installer: str) -> None:
    with pytest.raises(ResolveError) as info:
        resolve(LockRequest(("mlserver==1.7.1", "protobuf<4")), installer)
    assert info.value.exit_code == 6
    message = str(info.value)
    assert "protobuf" in message and "mlserver" in message
    assert "\n" not in message


@pytest.mark.network
@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_the_callers_terminal_width_does_not_change_what_is_read_from_the_resolver(
    installer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """uv wraps its errors at COLUMNS (pytest-xdist sets 80): a wrapped 'Because …' once read as an outage."""
    messages = []
    for columns in (None, "40"):
        if columns:
            monkeypatch.setenv("COLUMNS", columns)
        with pytest.raises(ResolveError) as info:
            resolve(LockRequest(("six==1.16.0", "six==1.15.0")), installer)
        messages.append(str(info.value))
    assert messages[0] == messages[1] and "six" in messages[0]


@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_unreachable_index_exits_7(installer: str) -> None:
    index = IndexConfig(f"http://user:s3cret@127.0.0.1:{_closed_port()}/simple")
    with pytest.raises(InstallError) as info:
        resolve(LockRequest(("six",), index=index), installer)
    assert info.value.exit_code == 7
    assert "unreachable" in str(info.value)
    assert "s3cret" not in str(info.value)


@pytest.mark.network
def test_uv_excludes_drop_a_package_for_slim() -> None:
    lock = resolve(LockRequest(("mlserver-mlflow==1.7.1", "mlflow-skinny==2.22.0"), excludes=("mlflow",)), "uv")
    assert "mlflow" not in lock.packages
    assert lock.packages["mlflow-skinny"] == "2.22.0"


def test_lock_parses_names_canonically() -> None:
    lock = Lock("Foo_Bar==1.0 \\\n    --hash=sha256:abc\nzope.interface==6.0 ; python_version >= '3'\n")
    assert lock.packages == {"foo-bar": "1.0", "zope-interface": "6.0"}


@pytest.mark.network
def test_lock_uses_the_target_interpreter() -> None:
    lock = resolve(LockRequest(("tomli; python_version < '3.11'", "six"), python=sys.executable), "uv")
    assert ("tomli" in lock.packages) == (sys.version_info < (3, 11))


@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_an_index_without_upload_times_cannot_resolve_as_of_a_date(installer: str, tmp_path: Path) -> None:
    """A local index (support.pyindex) that serves its page without PEP 700 upload times: as of now it resolves;
    as of a date pip says why it cannot (exit 6), and uv, which takes no file without a time, says what to do."""
    index = LocalIndex(tmp_path / "index")
    index.publish(build_wheel(tmp_path / "wheels", "mlflow-kserve-probe-dep", "1.0"), None)
    with serve(index) as url:
        now = LockRequest(
            ("mlflow-kserve-probe-dep",), index=IndexConfig(url), model_requirements=("mlflow-kserve-probe-dep",)
        )
        assert resolve(now, installer).packages == {"mlflow-kserve-probe-dep": "1.0"}
        with pytest.raises(ResolveError) as info:
            resolve(replace(now, resolve_mode="date", resolve_as_of="2025-06-01T00:00:00Z"), installer)
    assert info.value.exit_code == 6
    assert "--resolve-as-of now" in str(info.value) and "PEP 700" in str(info.value)
    if installer == "pip":
        assert "the package index gives no upload times (PEP 700)" in str(info.value)
