"""Read the model's declared environment: python_env.yaml, else requirements.txt, else conda.yaml's pip
section. Each line is classified (requirement, index option, VCS, URL, local path, include, …) for the
policy step; nothing here decides what is allowed."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml
from packaging.requirements import InvalidRequirement, Requirement

from mlflow_kserve.errors import NotServableError
from mlflow_kserve.mlmodel import ModelInfo, load_yaml

INDEX_OPTIONS = ("-i", "--index-url", "--extra-index-url", "-f", "--find-links", "--trusted-host", "--no-index")
INCLUDE_OPTIONS = ("-r", "--requirement")
CONSTRAINT_OPTIONS = ("-c", "--constraint")
EDITABLE_OPTIONS = ("-e", "--editable")
_VCS = re.compile(r"^(git|hg|svn|bzr)\+", re.IGNORECASE)
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)
_REMOTE = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)
_ARCHIVE = re.compile(r"\.(whl|tar\.gz|tgz|tar\.bz2|tbz|tar\.xz|txz|tar|zip)$", re.IGNORECASE)
_WINDOWS_DRIVE = re.compile(r"^[a-z]:[\\/]", re.IGNORECASE)
# conda packages that are not dependencies of the model itself
_CONDA_TOOLING = {"python", "pip", "setuptools", "wheel"}


@dataclass(frozen=True)
class RequirementLine:
    text: str  # the line, continuations joined, comment and per-requirement options (--hash) stripped
    source: str  # "requirements.txt:3" (file relative to the model dir + line number)
    kind: str  # requirement | index-option | editable | vcs | url | local-path | external-include
    #            | constraint (a requirement from a -c file inside the model dir) | other-option
    requirement: Requirement | None = None
    target: Path | None = None  # for external-include: the file named (None for a URL)
    base: Path | None = None  # the directory of the file the line is in: relative paths start here


@dataclass(frozen=True)
class ModelEnv:
    source: str  # "python_env.yaml" | "requirements.txt" | "conda.yaml" | "none"
    python_version: str | None
    lines: tuple[RequirementLine, ...]
    conda_only: tuple[str, ...] = ()


def read_model_env(model_dir: Path, info: ModelInfo, *, follow_external: bool = False) -> ModelEnv:
    """The model's requirement lines. Nested -r/-c inside the model dir are expanded in place; a -r/-c naming
    a file outside it (or a URL) is recorded as ``external-include`` and expanded only when ``follow_external``."""
    reader = _Reader(model_dir.resolve(), follow_external)
    python_env = model_dir / info.env.get("virtualenv", "python_env.yaml")
    if python_env.is_file():
        data = _yaml(python_env)
        deps = data.get("dependencies") or []
        if not isinstance(deps, list):
            raise NotServableError(
                f"{python_env.name}: 'dependencies' is not a list", "log the model again with MLflow"
            )
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
        return _from_conda(conda, info, reader)
    return ModelEnv("none", info.python_version, ())


def _from_conda(path: Path, info: ModelInfo, reader: _Reader) -> ModelEnv:
    data = _yaml(path)
    python = info.python_version
    conda_only: list[str] = []
    lines: list[RequirementLine] = []
    for dep in data.get("dependencies") or []:
        if isinstance(dep, dict) and "pip" in dep:
            for index, item in enumerate(dep["pip"] or []):
                lines += reader.parse_line(str(item), f"{path.name}:pip[{index}]", path.parent)
        elif isinstance(dep, (str, int, float)):
            dep = str(dep).strip()
            name = re.split(r"[=<>!~ ]", dep.split("::")[-1], maxsplit=1)[0].strip().lower()
            if name == "python":
                match = re.fullmatch(r"python\s*==?\s*([0-9][0-9.]*)\*?", dep.split("::")[-1].strip())
                if match and not python:
                    python = match.group(1).rstrip(".")
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
        if resolved in self.seen:  # -r loops and diamonds: each file once
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
                parsed = [replace(p, kind="constraint") if p.kind == "requirement" else p for p in parsed]
            out += parsed
        return out

    def parse_line(self, raw: str, source: str, base: Path) -> list[RequirementLine]:
        text = " ".join(_strip_comment(raw).split())
        if not text:
            return []
        if text.startswith("-"):
            return self._option(text, source, base)
        text = _strip_requirement_options(text)
        kind, requirement = _classify(text, source)
        return [RequirementLine(text, source, kind, requirement, base=base.resolve())]

    def _option(self, text: str, source: str, base: Path) -> list[RequirementLine]:
        option, value = split_option(text)
        if option in INCLUDE_OPTIONS or option in CONSTRAINT_OPTIONS:
            constraint = option in CONSTRAINT_OPTIONS
            if not value:
                raise NotServableError(f"{source}: {text!r} names no file", "fix the line in the model's requirements")
            if _REMOTE.match(value):
                if self.follow_external:
                    raise NotServableError(
                        f"{source}: {text!r} includes a requirements file by URL, which mlflow-kserve never downloads",
                        "copy the file into the model directory and include it with a relative path",
                    )
                return [RequirementLine(text, source, "external-include")]
            target = (base / value).resolve()  # absolute values replace base; symlinks resolved
            if not target.is_relative_to(self.root):
                external = RequirementLine(text, source, "external-include", target=target)
                if not self.follow_external:
                    return [external]
                return [external, *self.read_file(target, constraint)]
            if not target.is_file():
                raise NotServableError(
                    f"{source}: {text!r} names a missing file", "log the model with that file in its directory"
                )
            return self.read_file(target, constraint)
        if option in INDEX_OPTIONS:
            return [RequirementLine(text, source, "index-option")]
        if option in EDITABLE_OPTIONS:
            return [RequirementLine(text, source, "editable", base=base.resolve())]
        return [RequirementLine(text, source, "other-option")]

    def _rel(self, path: Path) -> str:
        resolved = path.resolve()
        return str(resolved.relative_to(self.root)) if resolved.is_relative_to(self.root) else str(path)


def _classify(text: str, source: str) -> tuple[str, Requirement | None]:
    """``requirement`` for a name from an index; else what the line installs from: vcs, url or local-path.

    PEP 508 ``name @ url`` lines are classified by their URL (so ``pkg[extra] @ git+https://…`` is VCS, not a
    requirement); lines that are not PEP 508 (bare URLs, paths, archives) are classified the way pip reads them.
    """
    try:
        requirement = Requirement(text)
    except InvalidRequirement as exc:
        location = text.split(";", 1)[0].strip()
        if _looks_like_location(location):
            return _location_kind(location), None
        raise NotServableError(
            f"{source}: {text!r} is not a valid requirement ({str(exc).splitlines()[0]})",
            "fix the line in the model's requirements",
        ) from exc
    if requirement.url:
        return _location_kind(requirement.url), requirement
    if _ARCHIVE.search(requirement.name):  # "pkg-1.0-py3-none-any.whl": pip installs the local file
        return "local-path", None
    return "requirement", requirement


def _looks_like_location(text: str) -> bool:
    return bool(
        _SCHEME.match(text)
        or text.startswith((".", "/", "~", "\\"))
        or "/" in text
        or "\\" in text
        or _WINDOWS_DRIVE.match(text)
        or _ARCHIVE.search(text)
    )


def _location_kind(location: str) -> str:
    if _VCS.match(location):
        return "vcs"
    if location.lower().startswith("file:") or _WINDOWS_DRIVE.match(location):
        return "local-path"
    if _SCHEME.match(location):
        return "url"
    return "local-path"


def split_option(text: str) -> tuple[str, str]:
    """``--opt=value`` / ``--opt value`` / ``-rfile`` / ``-r file`` → (option, value), quotes removed."""
    match = re.match(r"(--[^\s=]+)(?:\s*=\s*|\s+)?(.*)$", text) if text.startswith("--") else None
    match = match or re.match(r"(-.)\s*(.*)$", text)
    assert match is not None  # text starts with "-"
    option, value = match.group(1), match.group(2).strip()
    try:
        value = " ".join(shlex.split(value))
    except ValueError:  # unbalanced quotes: keep the text as written
        pass
    return option, value


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, text) per logical line: comments stripped, backslash continuations joined."""
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
    """pip's rule: ``#`` starts a comment at the line start or after whitespace (``#egg=`` in URLs stays)."""
    if line.lstrip().startswith("#"):
        return ""
    return re.split(r"\s+#", line, maxsplit=1)[0]


def _strip_requirement_options(text: str) -> str:
    """``pkg==1 --hash=sha256:…`` → ``pkg==1`` (per-requirement options are not ours to keep)."""
    return re.split(r"\s+--?[a-z]", text, maxsplit=1)[0].strip()


def _yaml(path: Path) -> dict[str, Any]:
    try:
        data = load_yaml(path.read_text()) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise NotServableError(
            f"{path.name} is not readable YAML ({type(exc).__name__})", "log the model again with MLflow"
        ) from exc
    if not isinstance(data, dict):
        raise NotServableError(f"{path.name} is not a YAML mapping", "log the model again with MLflow")
    return data
