"""Read the model's declared environment: python_env.yaml, else requirements.txt, else conda.yaml's pip
section. Each line is classified (requirement, index option, VCS, URL, local path, include, …) for the
policy step; nothing here decides what is allowed."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from packaging.requirements import InvalidRequirement, Requirement

from mlflow_kserve.errors import NotServableError
from mlflow_kserve.mlmodel import ModelInfo

INDEX_OPTIONS = ("-i", "--index-url", "--extra-index-url", "-f", "--find-links", "--trusted-host", "--no-index")
INCLUDE_OPTIONS = ("-r", "--requirement")
CONSTRAINT_OPTIONS = ("-c", "--constraint")
EDITABLE_OPTIONS = ("-e", "--editable")
_VCS = re.compile(r"^(?:[A-Za-z0-9._-]+\s*@\s*)?(git|hg|svn|bzr)\+", re.IGNORECASE)
_URL = re.compile(r"^(?:[A-Za-z0-9._\[\], -]+@\s*)?(https?|ftp)://", re.IGNORECASE)
_LOCAL = re.compile(r"^(?:[A-Za-z0-9._\[\], -]+@\s*)?(file:|\.{1,2}/|/|~)|\.(whl|tar\.gz|zip|tgz)$", re.IGNORECASE)
# conda packages that are not dependencies of the model itself
_CONDA_TOOLING = {"python", "pip", "setuptools", "wheel"}


@dataclass(frozen=True)
class RequirementLine:
    text: str  # the line, continuations joined, comment and per-requirement options stripped
    source: str  # "requirements.txt:3"
    kind: str  # requirement | index-option | editable | vcs | url | local-path | include | external-include
    #            | constraint | other-option
    requirement: Requirement | None = None
    target: Path | None = None  # for include / external-include: the file named


@dataclass(frozen=True)
class ModelEnv:
    source: str  # "python_env.yaml" | "requirements.txt" | "conda.yaml" | "none"
    python_version: str | None
    lines: tuple[RequirementLine, ...]
    conda_only: tuple[str, ...] = ()


def read_model_env(model_dir: Path, info: ModelInfo, *, follow_external: bool = False) -> ModelEnv:
    """The model's requirement lines; nested -r/-c inside the model dir are followed (outside: recorded as
    ``external-include`` and followed only when ``follow_external``)."""
    reader = _Reader(model_dir.resolve(), follow_external)
    python_env = model_dir / info.env.get("virtualenv", "python_env.yaml")
    if python_env.is_file():
        data = _yaml(python_env, model_dir)
        deps = data.get("dependencies") or []
        lines = []
        for index, dep in enumerate(deps):
            lines += reader.parse_line(str(dep), f"{python_env.name}:dependencies[{index}]", python_env.parent)
        python = data.get("python") or info.python_version
        return ModelEnv("python_env.yaml", str(python) if python else None, tuple(lines))
    requirements = model_dir / "requirements.txt"
    if requirements.is_file():
        return ModelEnv("requirements.txt", info.python_version, tuple(reader.read_file(requirements)))
    conda = model_dir / info.env.get("conda", "conda.yaml")
    if conda.is_file():
        return _from_conda(conda, model_dir, info, reader)
    return ModelEnv("none", info.python_version, ())


def _from_conda(path: Path, model_dir: Path, info: ModelInfo, reader: _Reader) -> ModelEnv:
    data = _yaml(path, model_dir)
    python = info.python_version
    conda_only: list[str] = []
    lines: list[RequirementLine] = []
    for dep in data.get("dependencies") or []:
        if isinstance(dep, dict) and "pip" in dep:
            for index, item in enumerate(dep["pip"] or []):
                lines += reader.parse_line(str(item), f"{path.name}:pip[{index}]", path.parent)
        elif isinstance(dep, str):
            name = re.split(r"[=<>!~ ]", dep, maxsplit=1)[0].strip().lower()
            if name == "python":
                if "=" in dep and not python:
                    python = dep.split("=", 1)[1].lstrip("=").strip()
            elif name not in _CONDA_TOOLING:
                conda_only.append(dep)
    return ModelEnv("conda.yaml", python, tuple(lines), tuple(conda_only))


class _Reader:
    def __init__(self, root: Path, follow_external: bool) -> None:
        self.root = root
        self.follow_external = follow_external
        self.seen: set[Path] = set()

    def read_file(self, path: Path, constraint: bool = False) -> list[RequirementLine]:
        resolved = path.resolve()
        if resolved in self.seen:
            return []
        self.seen.add(resolved)
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise NotServableError(
                f"cannot read {self._rel(path)} ({type(exc).__name__})", "log the model again with its requirements"
            ) from exc
        out: list[RequirementLine] = []
        for number, line in _logical_lines(text):
            parsed = self.parse_line(line, f"{self._rel(path)}:{number}", path.parent)
            if constraint:
                parsed = [
                    RequirementLine(p.text, p.source, "constraint", p.requirement) if p.kind == "requirement" else p
                    for p in parsed
                ]
            out += parsed
        return out

    def parse_line(self, raw: str, source: str, base: Path) -> list[RequirementLine]:
        text = " ".join(_strip_comment(raw).split())
        if not text:
            return []
        if text.startswith("-"):
            return self._option(text, source, base)
        text = _strip_requirement_options(text)
        for kind, pattern in (("vcs", _VCS), ("url", _URL), ("local-path", _LOCAL)):
            if pattern.search(text):
                return [RequirementLine(text, source, kind)]
        try:
            requirement = Requirement(text)
        except InvalidRequirement as exc:
            raise NotServableError(
                f"{source}: {text!r} is not a valid requirement ({exc})", "fix the line in the model's requirements"
            ) from exc
        return [RequirementLine(text, source, "requirement", requirement)]

    def _option(self, text: str, source: str, base: Path) -> list[RequirementLine]:
        option, _, value = text.replace("=", " ", 1).partition(" ") if text.startswith("--") else _short(text)
        value = value.strip()
        if option in INCLUDE_OPTIONS or option in CONSTRAINT_OPTIONS:
            target = (base / value).resolve() if not Path(value).is_absolute() else Path(value)
            inside = target.is_relative_to(self.root)
            if not inside:
                external = RequirementLine(text, source, "external-include", target=target)
                if not self.follow_external:
                    return [external]
                return [external, *self.read_file(target, option in CONSTRAINT_OPTIONS)]
            if not target.is_file():
                raise NotServableError(f"{source}: {text!r} names a missing file", "log the model with that file")
            return self.read_file(target, option in CONSTRAINT_OPTIONS)
        if option in INDEX_OPTIONS:
            return [RequirementLine(text, source, "index-option")]
        if option in EDITABLE_OPTIONS:
            return [RequirementLine(text, source, "editable")]
        return [RequirementLine(text, source, "other-option")]

    def _rel(self, path: Path) -> str:
        resolved = path.resolve()
        return str(resolved.relative_to(self.root)) if resolved.is_relative_to(self.root) else str(path)


def _short(text: str) -> tuple[str, str, str]:
    """``-rfile`` / ``-r file`` / ``-ifoo`` → (option, ' ', value)."""
    parts = shlex.split(text, posix=True) if " " in text else [text[:2], text[2:]]
    return parts[0], " ", " ".join(parts[1:])


def _logical_lines(text: str) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    buffer, start = "", 0
    for number, line in enumerate(text.splitlines(), start=1):
        if not buffer:
            start = number
        stripped = _strip_comment(line)
        if stripped.rstrip().endswith("\\"):
            buffer += stripped.rstrip()[:-1] + " "
            continue
        out.append((start, buffer + stripped))
        buffer = ""
    if buffer:
        out.append((start, buffer))
    return out


def _strip_comment(line: str) -> str:
    if line.lstrip().startswith("#"):
        return ""
    return re.split(r"\s+#", line, maxsplit=1)[0]


def _strip_requirement_options(text: str) -> str:
    """``pkg==1 --hash=sha256:…`` → ``pkg==1`` (per-requirement options are not ours to keep)."""
    return re.split(r"\s+--?[a-z]", text, maxsplit=1)[0].strip()


def _yaml(path: Path, model_dir: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise NotServableError(
            f"{path.name} is not readable YAML ({type(exc).__name__})", "log the model again with MLflow"
        ) from exc
    if not isinstance(data, dict):
        raise NotServableError(f"{path.name} is not a YAML mapping", "log the model again with MLflow")
    return data
