"""The model's own lock (modellock.py): a real uv.lock, made by ``uv lock`` against a local index, and the PEP 751
lock ``uv export`` makes of it, are read as locked for this interpreter (markers and the dev group left out, the
lock's hashes kept); the dependency policy holds for them (an index the operator has not allowed: exit 5, naming
it; a VCS entry: exit 5); a lock that does not parse is exit 4; one for another Python is exit 6. (Installing and
serving such models: test_serve_locked.py.)"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from mlflow_kserve import modellock
from mlflow_kserve.errors import NotServableError, PolicyError, ResolveError
from mlflow_kserve.index import IndexConfig
from mlflow_kserve.interpreter import probe
from mlflow_kserve.tools import uv_binary
from packaging.requirements import Requirement
from support.pyindex import LocalIndex, build_wheel, serve
from test_mlmodel import write_model
from test_plan import plan

MLFLOW_KSERVE = str(Path(sys.executable).with_name("mlflow-kserve"))
OLD = datetime(2024, 1, 1, tzinfo=timezone.utc)
PYPROJECT = """\
[project]
name = "iris-uv"
version = "0.1.0"
requires-python = ">=3.10"
dependencies = ["mlflow-kserve-probe", "mlflow-kserve-probe-win; sys_platform == 'win32'"]

[dependency-groups]
dev = ["mlflow-kserve-probe-dev"]
"""


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """A local index with the probe projects; yields its URL and each wheel's sha256."""
    root = tmp_path_factory.mktemp("index")
    local = LocalIndex(root / "index")
    hashes = {}
    for name, requires in (
        ("mlflow-kserve-probe", ["mlflow-kserve-probe-dep>=1.0"]),
        ("mlflow-kserve-probe-dep", []),
        ("mlflow-kserve-probe-win", []),
        ("mlflow-kserve-probe-dev", []),
    ):
        wheel = build_wheel(root / "wheels", name, "1.0", requires)
        hashes[name] = hashlib.sha256(wheel.read_bytes()).hexdigest()
        local.publish(wheel, OLD)
    with serve(local) as url:
        yield url, hashes


@pytest.fixture(scope="module")
def project(index: tuple[str, dict[str, str]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A uv project locked against the local index, as a user's project is before logging a model from it."""
    root = tmp_path_factory.mktemp("project")
    (root / "pyproject.toml").write_text(PYPROJECT)
    env = {"PATH": "/usr/bin:/bin", "UV_NO_CONFIG": "1", "UV_PYTHON_DOWNLOADS": "never", "UV_NO_CACHE": "1"}
    python = getattr(sys, "_base_executable", None) or sys.executable
    subprocess.run([uv_binary(), "lock", "-q", "--python", python, "--default-index", index[0]], cwd=root, env=env,
                   check=True, timeout=120)  # fmt: skip
    return root


def _model(project: Path, dest: Path, *files: str) -> Path:
    model = write_model(dest)
    for name in files:
        shutil.copyfile(project / name, model / name)
    return model


def _pylock(project: Path) -> str:
    cmd = [uv_binary(), "export", "--frozen", "--no-dev", "--no-emit-project", "--format", "pylock.toml"]
    return subprocess.run(cmd, cwd=project, capture_output=True, text=True, check=True, timeout=60).stdout


def _read(model: Path, index_url: str | None = None, allow: frozenset[str] = frozenset()) -> modellock.ModelLock:
    source, warning = modellock.find(model)
    assert source is not None and warning is None
    return modellock.read(model, source, probe(sys.executable), IndexConfig(index_url), allow)


def test_uv_lock_is_read_as_locked_for_this_interpreter(
    project: Path, index: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    url, hashes = index
    lock = _read(_model(project, tmp_path / "m", "uv.lock", "pyproject.toml"), url)
    assert lock.source == "uv.lock"
    assert lock.pins == ("mlflow-kserve-probe==1.0", "mlflow-kserve-probe-dep==1.0")  # no win32 entry, no dev group
    for package in lock.packages:
        assert f"--hash=sha256:{hashes[package.name]}" in package.line, "the lock's own hashes"
    files = b"".join(f"{n}\0".encode() + (project / n).read_bytes() + b"\0" for n in ("uv.lock", "pyproject.toml"))
    assert lock.digest == hashlib.sha256(files).hexdigest()
    # what `uv export --frozen` says the project installs here
    cmd = [uv_binary(), "export", "--frozen", "--no-dev", "--no-emit-project", "--no-hashes", "--no-header"]
    exported = subprocess.run(cmd, cwd=project, capture_output=True, text=True, check=True, timeout=60).stdout
    requirements = [Requirement(line) for line in exported.splitlines() if line and not line.startswith((" ", "#"))]
    expected = {str(r.name): str(r.specifier)[2:] for r in requirements if not r.marker or r.marker.evaluate()}
    assert lock.versions() == expected


def test_pylock_toml_is_read_like_the_uv_lock_it_was_exported_from(project: Path, index: tuple, tmp_path: Path) -> None:
    from_uv_lock = _read(_model(project, tmp_path / "uv", "uv.lock", "pyproject.toml"), index[0])
    model = write_model(tmp_path / "pylock")
    (model / "pylock.toml").write_text(_pylock(project))
    from_pylock = _read(model, index[0])
    assert from_pylock.source == "pylock.toml"
    assert from_pylock.text == from_uv_lock.text, "the same install, line for line"


def test_an_index_the_operator_has_not_allowed_is_refused_naming_it(
    project: Path, index: tuple, tmp_path: Path
) -> None:
    model = _model(project, tmp_path / "m", "uv.lock", "pyproject.toml")
    with pytest.raises(PolicyError) as info:
        _read(model)  # the operator's index: PyPI
    message = str(info.value)
    assert info.value.exit_code == 5
    assert f"takes mlflow-kserve-probe 1.0 from the index {index[0]}" in message
    assert "--extra-index-url" in message and "--allow index-options" in message
    allowed = _read(model, allow=frozenset({"index-options"}))
    assert allowed.indexes == (index[0],), "allowed: the install step gets it as an extra index"
    assert _read(model, index[0] + "/").indexes == (), "the operator's own index"


def test_a_uv_lock_without_its_pyproject_is_ignored_with_a_warning(project: Path, tmp_path: Path) -> None:
    model = _model(project, tmp_path / "m", "uv.lock")
    result = plan(model)
    assert result.model_lock is None and result.resolution.mode == "model"
    assert any("uv.lock but no pyproject.toml" in warning for warning in result.warnings)


def test_the_plan_says_from_the_models_lock(project: Path, index: tuple, tmp_path: Path) -> None:
    result = plan(_model(project, tmp_path / "m", "uv.lock", "pyproject.toml"), index_url=index[0])
    assert result.resolution.describe().startswith("from the model's uv.lock (sha256 ")
    assert result.model_requirements == ("mlflow-kserve-probe==1.0", "mlflow-kserve-probe-dep==1.0")
    assert result.completions == ("mlflow==3.17.2",), "a lock without mlflow gets MLmodel's, resolved around it"
    assert any("has no mlflow" in warning for warning in result.warnings)


@pytest.mark.parametrize(
    ("name", "text", "cause"),
    [
        ("uv.lock", "version = 1\n[[package]\n", "the model's uv.lock cannot be read (uv export:"),
        ("pylock.toml", "lock-version = '1.0'\n[[packages]\nname=", "the model's pylock.toml is not TOML"),
        ("pylock.toml", "created-by = 'x'\npackages = []\n", "the model's pylock.toml is not a PEP 751 lock"),
    ],
)
def test_a_lock_that_does_not_parse_is_exit_4(project: Path, tmp_path: Path, name: str, text: str, cause: str) -> None:
    model = _model(project, tmp_path / "m", "pyproject.toml") if name == "uv.lock" else write_model(tmp_path / "m")
    (model / name).write_text(text)
    with pytest.raises(NotServableError) as info:
        _read(model)
    assert info.value.exit_code == 4 and cause in str(info.value), str(info.value)


def test_a_lock_for_another_python_is_exit_6(tmp_path: Path) -> None:
    model = write_model(tmp_path / "m")
    (model / "pylock.toml").write_text("lock-version = '1.0'\ncreated-by = 'x'\nrequires-python = '>=3.99'\n"
                                       "packages = []\n")  # fmt: skip
    with pytest.raises(ResolveError) as info:
        _read(model)
    assert info.value.exit_code == 6 and "has nothing for the serving interpreter" in str(info.value)


VCS_LOCK = """\
lock-version = "1.0"
created-by = "hand"

[[packages]]
name = "roman"
version = "5.2"
vcs = { type = "git", url = "https://github.com/zopefoundation/roman.git", commit-id = "0123456789abcdef" }
"""


def test_a_vcs_entry_needs_its_allowance(tmp_path: Path) -> None:
    model = write_model(tmp_path / "m")
    (model / "pylock.toml").write_text(VCS_LOCK)
    with pytest.raises(PolicyError) as info:
        _read(model)
    assert "the model's pylock.toml: roman 5.2 installs from a version-control URL" in str(info.value)
    assert "--allow vcs" in str(info.value)
    lock = _read(model, allow=frozenset({"vcs"}))
    assert lock.text == "roman @ git+https://github.com/zopefoundation/roman.git@0123456789abcdef\n"


@pytest.mark.parametrize(
    ("broken", "code", "needle"),
    [("index", 5, "which the operator has not allowed"), ("uv.lock", 4, "the model's uv.lock cannot be read")],
)
def test_check_exits_with_the_policy_and_parse_codes(
    project: Path, index: tuple, tmp_path: Path, broken: str, code: int, needle: str
) -> None:
    model = _model(project, tmp_path / "m", "uv.lock", "pyproject.toml")
    if broken == "uv.lock":
        (model / "uv.lock").write_text("version = 1\nthis is not toml\n")
    args = [MLFLOW_KSERVE, "check", "--model-uri", str(model), "--env-dir", str(tmp_path / "e"),
            "--models-dir", str(tmp_path / "ms")]  # fmt: skip
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300)
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert proc.returncode == code, proc.stderr
    assert len(errors) == 1 and needle in errors[0], proc.stderr
