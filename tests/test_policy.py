"""The dependency policy: each rule rejects its line (exit 5, naming line, source and the allowance) unless the
operator allows it; the Python version policy warns or fails."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow_kserve.errors import PolicyError
from mlflow_kserve.mlmodel import read_mlmodel
from mlflow_kserve.options import ALLOWANCES
from mlflow_kserve.policy import RULES, PolicyResult, apply_policy, check_python
from mlflow_kserve.requirements import read_model_env
from test_mlmodel import write_model

# (line, allowance that permits it, what the kept line becomes; {model} is the model dir)
RULE_LINES = [
    ("--index-url https://mirror.example/simple", "index-options", "--index-url=https://mirror.example/simple"),
    ("-i https://mirror.example/simple?a=b", "index-options", "--index-url=https://mirror.example/simple?a=b"),
    ("--extra-index-url https://mirror.example/simple", "index-options", "--extra-index-url=https://mirror.example/simple"),
    ("-f https://mirror.example/wheels", "index-options", "--find-links=https://mirror.example/wheels"),
    ("--find-links=/wheels", "index-options", "--find-links=/wheels"),
    ("--trusted-host mirror.example", "index-options", "--trusted-host=mirror.example"),
    ("-e ./src", "editable", "-e {model}/src"),
    ("-e git+https://github.com/org/pkg.git#egg=pkg", "editable", "-e git+https://github.com/org/pkg.git#egg=pkg"),
    ("git+https://github.com/org/pkg.git@v1#egg=pkg", "vcs", "git+https://github.com/org/pkg.git@v1#egg=pkg"),
    ("pkg[extra] @ git+https://github.com/org/pkg.git", "vcs", "pkg[extra] @ git+https://github.com/org/pkg.git"),
    ("pkg @ https://files.example/pkg-1.0-py3-none-any.whl", "url", "pkg @ https://files.example/pkg-1.0-py3-none-any.whl"),
    ("https://files.example/pkg-1.0.tar.gz", "url", "https://files.example/pkg-1.0.tar.gz"),
    ("./wheels/pkg-1.0-py3-none-any.whl", "local-path", "{model}/wheels/pkg-1.0-py3-none-any.whl"),
    ("pkg @ ./vendored/pkg", "local-path", "pkg @ file://{model}/vendored/pkg"),
    ("/opt/pkg", "local-path", "/opt/pkg"),
    ("pkg @ file:///opt/pkg", "local-path", "pkg @ file:///opt/pkg"),
    ("-r ../outside.txt", "external-include", "requests"),
    ("-c ../outside.txt", "external-include", None),
]  # fmt: skip


def policy(root: Path, allow: tuple[str, ...] = ()) -> PolicyResult:
    env = read_model_env(root, read_mlmodel(root), follow_external="external-include" in allow)
    return apply_policy(env, root, frozenset(allow))


def test_every_rule_has_an_allowance_flag() -> None:
    assert sorted(allowance for allowance, _ in RULES.values()) == sorted(ALLOWANCES)


@pytest.mark.parametrize(("line", "allowance", "kept"), RULE_LINES)
def test_rule_rejects_the_line_naming_source_and_allowance(
    tmp_path: Path, line: str, allowance: str, kept: str | None
) -> None:
    root = write_model(tmp_path / "model", f"mlflow==3.17.2\n{line}\n")
    others = tuple(a for a in ALLOWANCES if a != allowance)
    with pytest.raises(PolicyError) as info:
        policy(root, others)  # every other allowance does not help
    message = str(info.value)
    assert info.value.exit_code == 5
    assert message.startswith(f"requirements.txt:2: {line!r} ")
    assert f"allow it with --allow {allowance} (MLFLOW_KSERVE_ALLOW, chart: dependencies.allow)" in message


@pytest.mark.parametrize(("line", "allowance", "kept"), RULE_LINES)
def test_allowance_keeps_the_line(tmp_path: Path, line: str, allowance: str, kept: str | None) -> None:
    (tmp_path / "outside.txt").write_text("requests\n")
    root = write_model(tmp_path / "model", f"mlflow==3.17.2\n{line}\n")
    result = policy(root, (allowance,))
    expected = kept.format(model=root.resolve()) if kept else None
    if allowance == "index-options":
        assert result.index_options == (expected,)
        assert result.requirements == ("mlflow==3.17.2",)
    elif line.startswith("-c"):
        assert result.constraints == ("requests",)
    else:
        assert result.requirements == ("mlflow==3.17.2", expected)


def test_index_option_message_says_indexes_come_from_the_operator(tmp_path: Path) -> None:
    root = write_model(tmp_path, "--extra-index-url https://x.example/simple\nmlflow==3.17.2\n")
    with pytest.raises(PolicyError) as info:
        policy(root)
    assert str(info.value) == (
        "requirements.txt:1: '--extra-index-url https://x.example/simple' sets a package index; indexes come only "
        "from the operator; fix: remove the line from the model, or allow it with --allow index-options "
        "(MLFLOW_KSERVE_ALLOW, chart: dependencies.allow)"
    )


def test_credentials_in_a_rejected_line_are_redacted(tmp_path: Path) -> None:
    root = write_model(tmp_path, "mlflow==3.17.2\n--index-url https://user:s3cret@mirror.example/simple\n")
    with pytest.raises(PolicyError) as info:
        policy(root)
    assert "s3cret" not in str(info.value) and "https://***@mirror.example" in str(info.value)


def test_rule_applies_inside_nested_includes(tmp_path: Path) -> None:
    root = write_model(tmp_path, "mlflow==3.17.2\n-r extra.txt\n")
    (root / "extra.txt").write_text("pandas<3\npkg @ https://files.example/pkg.whl\n")
    with pytest.raises(PolicyError, match=r"^extra\.txt:2: 'pkg @ https://files\.example/pkg\.whl' installs from"):
        policy(root)


def test_allowed_relative_paths_start_at_the_including_file(tmp_path: Path) -> None:
    root = write_model(tmp_path, "mlflow==3.17.2\n-r sub/extra.txt\n")
    (root / "sub").mkdir()
    (root / "sub" / "extra.txt").write_text("./pkg\n")
    assert policy(root, ("local-path",)).requirements[1] == str(root.resolve() / "sub" / "pkg")


def test_plain_requirements_and_model_constraints_pass(tmp_path: Path) -> None:
    root = write_model(tmp_path, "mlflow==3.17.2\nnumpy<2 ; python_version >= '3.9'\n-c pins.txt\n")
    (root / "pins.txt").write_text("scipy<1.15\n")
    result = policy(root)
    assert result == PolicyResult(("mlflow==3.17.2", "numpy<2 ; python_version >= '3.9'"), ("scipy<1.15",), (), ())


def test_ignored_options_and_conda_only_packages_warn(tmp_path: Path) -> None:
    conda = "dependencies:\n- python=3.11.7\n- cudatoolkit=11.8\n- pip:\n  - mlflow==3.17.2\n  - --prefer-binary\n"
    result = policy(write_model(tmp_path, None, conda=conda))
    assert result.requirements == ("mlflow==3.17.2",)
    assert result.warnings == (
        "conda.yaml:pip[1]: ignored option '--prefer-binary'",
        "conda-only packages in conda.yaml are not installed (pip environment): cudatoolkit=11.8",
    )


@pytest.mark.parametrize(("model", "interpreter"), [("3.11.7", "3.11.2"), ("3.11", "3.11.9"), (None, "3.12.1")])
def test_python_same_minor_or_unknown_is_silent(model: str | None, interpreter: str) -> None:
    assert check_python(model, interpreter, "strict") is None
    assert check_python(model, interpreter, "warn") is None


def test_python_other_minor_warns() -> None:
    warning = check_python("3.10.14", "3.11.7", "warn")
    assert warning == (
        "the model was logged with Python 3.10.14, the serving interpreter is 3.11.7 (--python-policy warn)"
    )


def test_python_other_minor_fails_under_strict() -> None:
    with pytest.raises(PolicyError) as info:
        check_python("3.10.14", "3.11.7", "strict")
    message = str(info.value)
    assert info.value.exit_code == 5
    assert "logged with Python 3.10.14, the serving interpreter is 3.11.7" in message
    assert "images built for Python 3.10 (chart: pythonVersion), or --python-policy warn" in message
