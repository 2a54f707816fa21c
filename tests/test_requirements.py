"""Reading the model's environment files: each form MLflow writes, includes, and how each line is classified."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow_kserve.errors import NotServableError
from mlflow_kserve.mlmodel import read_mlmodel
from mlflow_kserve.requirements import ModelEnv, read_model_env
from test_mlmodel import write_model

CONDA = """\
channels:
- conda-forge
dependencies:
- python=3.11.7
- pip<=26.3
- cudatoolkit=11.8
- conda-forge::libgomp
- pip:
  - mlflow==3.17.2
  - pandas==2.2.3
name: mlflow-env
"""


def env_of(root: Path, **kwargs: bool) -> ModelEnv:
    return read_model_env(root, read_mlmodel(root), **kwargs)


def texts(env: ModelEnv) -> list[tuple[str, str]]:
    return [(line.kind, line.text) for line in env.lines]


def test_python_env_yaml_with_r_requirements_txt(tmp_path: Path) -> None:
    env = env_of(write_model(tmp_path, python="3.12.4", conda=CONDA))
    assert env.source == "python_env.yaml"
    assert env.python_version == "3.12.4"  # python_env.yaml's, not the conda file's
    assert texts(env) == [
        ("requirement", "mlflow==3.17.2"),
        ("requirement", "numpy==2.4.6"),
        ("requirement", "scikit-learn==1.9.1"),
    ]  # build_dependencies (pip, setuptools, wheel) are not the model's
    assert [line.source for line in env.lines] == ["requirements.txt:1", "requirements.txt:2", "requirements.txt:3"]
    assert env.conda_only == ()


def test_python_env_yaml_with_inline_dependencies(tmp_path: Path) -> None:
    root = write_model(tmp_path)
    (root / "python_env.yaml").write_text("python: 3.10\ndependencies:\n- mlflow==3.17.2\n- torch>=2  # cpu\n")
    env = env_of(root)
    assert env.python_version == "3.10"
    assert texts(env) == [("requirement", "mlflow==3.17.2"), ("requirement", "torch>=2")]
    assert env.lines[1].source == "python_env.yaml:dependencies[1]"


def test_python_env_yaml_named_by_mlmodel(tmp_path: Path) -> None:
    root = write_model(tmp_path, python_env=False)
    (root / "MLmodel").write_text(
        (root / "MLmodel").read_text().replace("virtualenv: python_env.yaml", "virtualenv: env/venv.yaml")
    )
    (root / "env").mkdir()
    (root / "env" / "venv.yaml").write_text("python: 3.11.7\ndependencies:\n- -r ../requirements.txt\n")
    env = env_of(root)
    assert env.source == "python_env.yaml"
    assert env.lines[0].text == "mlflow==3.17.2"


def test_requirements_txt_only(tmp_path: Path) -> None:
    env = env_of(write_model(tmp_path, "mlflow==2.22.0\npandas<3\n", python="3.10.14", python_env=False))
    assert env.source == "requirements.txt"
    assert env.python_version == "3.10.14"  # from MLmodel's python_function.python_version
    assert texts(env) == [("requirement", "mlflow==2.22.0"), ("requirement", "pandas<3")]


def test_conda_yaml_pip_section_and_conda_only_packages(tmp_path: Path) -> None:
    root = write_model(tmp_path, None, conda=CONDA)
    (root / "MLmodel").write_text((root / "MLmodel").read_text().replace("    python_version: 3.11.7\n", ""))
    env = env_of(root)
    assert env.source == "conda.yaml"
    assert env.python_version == "3.11.7"  # from the python=3.11.7 dependency
    assert texts(env) == [("requirement", "mlflow==3.17.2"), ("requirement", "pandas==2.2.3")]
    assert env.lines[1].source == "conda.yaml:pip[1]"
    assert env.conda_only == ("cudatoolkit=11.8", "conda-forge::libgomp")  # python and pip are not listed


def test_no_env_files(tmp_path: Path) -> None:
    env = env_of(write_model(tmp_path, None))
    assert (env.source, env.lines, env.python_version) == ("none", (), "3.11.7")


def test_comments_continuations_markers_and_hashes(tmp_path: Path) -> None:
    requirements = (
        "# exported by hand\n"
        "\n"
        "mlflow==3.17.2  # pinned\n"
        "pandas>=2,\\\n"
        "    <3\n"
        "numpy<2 ; python_version >= '3.9' and sys_platform != 'win32'\n"
        "scipy==1.14.1 \\\n"
        "    --hash=sha256:aaaa \\\n"
        "    --hash=sha256:bbbb\n"
        "torch[cpu]~=2.5  # extras\n"
        "pkg @ git+https://github.com/org/pkg.git#egg=pkg\n"
    )
    env = env_of(write_model(tmp_path, requirements, python_env=False))
    assert [(line.text, line.source) for line in env.lines] == [
        ("mlflow==3.17.2", "requirements.txt:3"),
        ("pandas>=2, <3", "requirements.txt:4"),
        ("numpy<2 ; python_version >= '3.9' and sys_platform != 'win32'", "requirements.txt:6"),
        ("scipy==1.14.1", "requirements.txt:7"),
        ("torch[cpu]~=2.5", "requirements.txt:10"),
        ("pkg @ git+https://github.com/org/pkg.git#egg=pkg", "requirements.txt:11"),  # "#egg" is no comment
    ]
    assert str(env.lines[2].requirement.marker) == 'python_version >= "3.9" and sys_platform != "win32"'
    assert env.lines[-1].kind == "vcs"


def test_nested_r_and_c_inside_the_model_dir(tmp_path: Path) -> None:
    root = write_model(tmp_path, "mlflow==3.17.2\n-r extra/more.txt\n--constraint=constraints.txt\n-r extra/more.txt\n")
    (root / "extra").mkdir()
    (root / "extra" / "more.txt").write_text("pandas<3\n-r ../shared.txt\n")
    (root / "shared.txt").write_text("-rextra/more.txt\nrequests\n")  # a loop: each file is read once
    (root / "constraints.txt").write_text("numpy<2.3\n")
    env = env_of(root)
    assert [(line.kind, line.text, line.source) for line in env.lines] == [
        ("requirement", "mlflow==3.17.2", "requirements.txt:1"),
        ("requirement", "pandas<3", "extra/more.txt:1"),
        ("requirement", "requests", "shared.txt:2"),
        ("constraint", "numpy<2.3", "constraints.txt:1"),
    ]


def test_include_of_a_missing_file_exits_4(tmp_path: Path) -> None:
    with pytest.raises(NotServableError, match=r"requirements\.txt:2: '-r missing\.txt' names a missing file") as e:
        env_of(write_model(tmp_path, "mlflow==3.17.2\n-r missing.txt\n"))
    assert e.value.exit_code == 4


@pytest.mark.parametrize("line", ["-r ../outside.txt", "-c ../outside.txt", "-r {abs}"])
def test_include_escaping_the_model_dir_is_recorded_not_read(tmp_path: Path, line: str) -> None:
    (tmp_path / "outside.txt").write_text("requests\n")
    root = write_model(tmp_path / "model", "mlflow==3.17.2\n" + line.format(abs=tmp_path / "model/../outside.txt"))
    env = env_of(root)
    assert [line.kind for line in env.lines] == ["requirement", "external-include"]
    assert env.lines[1].target == tmp_path / "outside.txt"
    followed = env_of(root, follow_external=True)
    assert [line.kind for line in followed.lines][:2] == ["requirement", "external-include"]
    assert followed.lines[2].text == "requests"


@pytest.mark.parametrize("follow", [False, True], ids=["default", "external-include-allowed"])
def test_include_of_a_link_leaving_the_model_dir_exits_4_naming_the_link(tmp_path: Path, follow: bool) -> None:
    (tmp_path / "outside.txt").write_text("root:x:0:0:root:/root:/bin/bash\n")
    root = write_model(tmp_path / "model", "mlflow==3.17.2\n-r linked.txt\n")
    (root / "linked.txt").symlink_to(tmp_path / "outside.txt")
    with pytest.raises(NotServableError, match=r"linked\.txt is a symbolic link that leaves the model directory") as e:
        env_of(root, follow_external=follow)
    assert e.value.exit_code == 4 and "root:x" not in str(e.value)


def test_include_by_url_is_external_and_never_downloaded(tmp_path: Path) -> None:
    root = write_model(tmp_path, "mlflow==3.17.2\n-r https://example.invalid/reqs.txt\n")
    assert env_of(root).lines[1].kind == "external-include"
    with pytest.raises(NotServableError, match="never downloads"):
        env_of(root, follow_external=True)


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        ("--index-url https://mirror.example/simple", "index-option"),
        ("--index-url=https://mirror.example/simple", "index-option"),
        ("-i https://mirror.example/simple", "index-option"),
        ("-ihttps://mirror.example/simple", "index-option"),
        ("--extra-index-url https://mirror.example/simple", "index-option"),
        ("-f https://mirror.example/wheels", "index-option"),
        ("--find-links /wheels", "index-option"),
        ("--trusted-host mirror.example", "index-option"),
        ("--no-index", "index-option"),
        ("-e ./src", "editable"),
        ("--editable git+https://github.com/org/pkg.git#egg=pkg", "editable"),
        ("git+https://github.com/org/pkg.git@v1#egg=pkg", "vcs"),
        ("pkg @ git+ssh://git@github.com/org/pkg.git", "vcs"),
        ("pkg[extra] @ git+https://github.com/org/pkg.git", "vcs"),
        ("hg+https://hg.example/pkg#egg=pkg", "vcs"),
        ("pkg @ https://files.example/pkg-1.0-py3-none-any.whl", "url"),
        ("pkg[extra]@https://files.example/pkg-1.0.tar.gz ; python_version > '3'", "url"),
        ("https://files.example/pkg-1.0-py3-none-any.whl", "url"),
        ("https://files.example/pkg-1.0.tar.gz#egg=pkg", "url"),
        ("./wheels/pkg-1.0-py3-none-any.whl", "local-path"),
        ("../pkg", "local-path"),
        (".", "local-path"),
        ("src/pkg", "local-path"),
        ("/opt/pkg", "local-path"),
        ("~/pkg", "local-path"),
        ("pkg-1.0-py3-none-any.whl", "local-path"),
        ("pkg @ file:///opt/pkg", "local-path"),
        ("file:///opt/pkg-1.0.tar.gz", "local-path"),
        ("pkg @ ./vendored/pkg", "local-path"),
        ("--prefer-binary", "other-option"),
        ("--only-binary=:all:", "other-option"),
        ("scikit-learn>=1.5,<2", "requirement"),
        ("pkg[a,b]==1.0 ; python_version < '3.12'", "requirement"),
    ],
)
def test_line_kinds(tmp_path: Path, line: str, kind: str) -> None:
    env = env_of(write_model(tmp_path, f"mlflow==3.17.2\n{line}\n"))
    assert [(entry.kind, entry.source) for entry in env.lines[1:]] == [(kind, "requirements.txt:2")]
    assert (env.lines[1].requirement is not None) == (kind == "requirement" or " @ " in line or "]@" in line)


@pytest.mark.parametrize("line", ["scikit learn ===", "pkg==1.0 ;; bad", "${SECRET}"])
def test_invalid_requirement_exits_4_naming_the_line(tmp_path: Path, line: str) -> None:
    with pytest.raises(NotServableError) as info:
        env_of(write_model(tmp_path, f"mlflow==3.17.2\n{line}\n"))
    assert info.value.exit_code == 4
    assert str(info.value).startswith(f"requirements.txt:2: {line!r} is not a valid requirement")


def test_unreadable_env_yaml_exits_4(tmp_path: Path) -> None:
    root = write_model(tmp_path)
    (root / "python_env.yaml").write_text("python: [3.11\n")
    with pytest.raises(NotServableError, match=r"python_env\.yaml is not readable YAML") as info:
        env_of(root)
    assert info.value.exit_code == 4
