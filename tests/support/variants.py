"""Broken variants of a real model, made by copying it and editing one file: the causes of exit codes 4–6."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml


def copy_model(model: Path, dest: Path) -> Path:
    shutil.copytree(model, dest)
    return dest


def without_mlmodel(model: Path, dest: Path) -> Path:
    copy_model(model, dest)
    (dest / "MLmodel").unlink()
    return dest


def without_pyfunc(model: Path, dest: Path) -> Path:
    copy_model(model, dest)
    data = yaml.safe_load((dest / "MLmodel").read_text())
    data["flavors"].pop("python_function")
    (dest / "MLmodel").write_text(yaml.safe_dump(data))
    return dest


def with_requirement_lines(model: Path, dest: Path, *lines: str) -> Path:
    """Append lines to the model's requirements.txt (python_env.yaml includes it with -r)."""
    copy_model(model, dest)
    path = dest / "requirements.txt"
    path.write_text(path.read_text().rstrip("\n") + "\n" + "\n".join(lines) + "\n")
    return dest


def with_python(model: Path, dest: Path, version: str) -> Path:
    copy_model(model, dest)
    path = dest / "python_env.yaml"
    data = yaml.safe_load(path.read_text())
    data["python"] = version
    path.write_text(yaml.safe_dump(data))
    return dest
