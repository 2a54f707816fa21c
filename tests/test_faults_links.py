"""Fault suite: symbolic links out of the model directory. A model's files are data from a stranger: a link to
/etc/passwd or to the pod's ServiceAccount token must never be read, copied or echoed. Fetch refuses a model
holding such a link (exit 4, naming the link); an operator-allowed include outside the model directory is
read, but its lines are never quoted."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from support import variants
from support.faults import Dirs, assert_clean, assert_fails, cli, planted
from support.models import BuiltModel

pytestmark = pytest.mark.timeout(600)

TOKEN = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImZhdWx0c3VpdGUifQ.faultsuite-serviceaccount-token"


def _outside_secret(tmp_path: Path) -> Path:
    """A file outside the model that stands for the ServiceAccount token."""
    secret = tmp_path / "var-run-secrets" / "token"
    secret.parent.mkdir()
    secret.write_text(TOKEN + "\n")
    return secret


def _link(name: str, target: Callable[[Path, Path], Path]) -> Callable[[Path, Path], None]:
    """Replace (or add) ``name`` in the model by a link to ``target(model, tmp_path)``."""

    def edit(model: Path, tmp_path: Path) -> None:
        path = model / name
        path.parent.mkdir(parents=True, exist_ok=True)
        destination = target(model, tmp_path)
        if path.exists() or path.is_symlink():
            path.unlink()
        path.symlink_to(destination)

    return edit


def _moved_out(name: str) -> Callable[[Path, Path], Path]:
    """The model's own ``name`` moved outside the model: a valid file, reached through a link that leaves."""

    def target(model: Path, tmp_path: Path) -> Path:
        outside = tmp_path / f"outside-{name}"
        (model / name).rename(outside)
        return outside

    return target


# (id, edit, words the error line must hold)
CASES = [
    ("requirements-to-etc-passwd", _link("requirements.txt", lambda m, t: Path("/etc/passwd")), ["requirements.txt"]),
    ("requirements-to-token", _link("requirements.txt", lambda m, t: _outside_secret(t)), ["requirements.txt"]),
    ("mlmodel-moved-out", _link("MLmodel", _moved_out("MLmodel")), ["MLmodel is a symbolic link"]),
    ("python-env-moved-out", _link("python_env.yaml", _moved_out("python_env.yaml")), ["python_env.yaml is a"]),
    ("unused-conda-to-etc", _link("conda.yaml", lambda m, t: Path("/etc/hostname")), ["conda.yaml is a"]),
    ("artifact-to-token", _link("artifacts/token", lambda m, t: _outside_secret(t)), ["artifacts/token is a"]),
    ("directory-to-etc", _link("artifacts/etc", lambda m, t: Path("/etc")), ["artifacts/etc is a symbolic link"]),
    ("relative-dotdot", _link("data.bin", lambda m, t: Path("../../../../../../etc/passwd")), ["data.bin is a"]),
    ("dangling", _link("weights.bin", lambda m, t: t / "no-such-file"), ["weights.bin is a symbolic link to nothing"]),
    ("loop-of-links", _link("loop", lambda m, t: Path("loop")), ["loop is a symbolic link to nothing"]),
    ("directory-to-itself", _link("sub/again", lambda m, t: Path("..")), ["sub/again is a symbolic link to a dir"]),
]


@pytest.mark.parametrize("scheme", ["path", "file-uri"])
@pytest.mark.parametrize(("edit", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_link_out_of_the_model_is_refused_naming_it(
    edit: Callable[[Path, Path], None], words: list[str], scheme: str, models: dict[str, BuiltModel], tmp_path: Path
) -> None:
    model = variants.copy_model(models["sklearn-columns"].path, tmp_path / "model")
    edit(model, tmp_path)
    dirs = Dirs(tmp_path / "pod")
    uri = model.as_uri() if scheme == "file-uri" else str(model)
    proc = cli("init", uri, dirs, planted(os.environ))
    line = assert_fails(proc, 4, dirs, *words)
    assert "fix: replace the link with the file itself" in line
    output = proc.stdout + proc.stderr
    assert "root:x:0:0" not in output and TOKEN not in output and "faultsuite-serviceaccount" not in output
    assert not (dirs.models / "model").exists(), "nothing of the model was copied"


def test_links_that_stay_inside_the_model_are_followed(models: dict[str, BuiltModel], tmp_path: Path) -> None:
    model = variants.copy_model(models["sklearn-columns"].path, tmp_path / "model")
    (model / "requirements.txt").rename(model / "pinned.txt")
    (model / "requirements.txt").symlink_to("pinned.txt")
    (model / "env").mkdir()
    (model / "env" / "all.txt").symlink_to(model / "pinned.txt")  # absolute, but inside
    dirs = Dirs(tmp_path / "pod")
    proc = cli("check", str(model), dirs, planted(os.environ), "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_clean(proc.stdout + proc.stderr)
    fetched = dirs.models / "model"
    assert not (fetched / "requirements.txt").is_symlink() and (fetched / "requirements.txt").read_text().startswith(
        "mlflow=="
    )


@pytest.mark.parametrize("allow", [False, True], ids=["default", "external-include-allowed"])
def test_an_include_of_a_file_outside_is_never_quoted(
    allow: bool, models: dict[str, BuiltModel], tmp_path: Path
) -> None:
    """`-r /abs/path` outside the model is refused by the policy (exit 5); where the operator allows it and
    the file is not a requirements file (a copy of /etc/passwd), the error names the file and line, never its
    text. (An allowed include is read like the model's own requirements: docs/dependencies.md says to allow it only for
    trusted models.)"""
    secret = tmp_path / "passwd"
    secret.write_text(f"root:x:0:0:{TOKEN}:/root:/bin/bash\n")
    model = variants.with_requirement_lines(models["sklearn-columns"].path, tmp_path / "model", f"-r {secret}")
    dirs = Dirs(tmp_path / "pod")
    extra = ["--allow", "external-include"] if allow else []
    proc = cli("init", str(model), dirs, planted(os.environ), *extra)
    if allow:
        # pip would read "root:x:…" as a URL: refused as one, and named by file and line only
        assert_fails(proc, 5, dirs, f"{secret}:1: a line of a file outside the model directory installs from")
    else:
        assert_fails(proc, 5, dirs, "includes a file outside the model directory", "--allow external-include")
    assert TOKEN not in proc.stdout + proc.stderr
