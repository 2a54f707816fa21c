"""Read the model's declared environment: python_env.yaml, else requirements.txt, else conda.yaml's pip
section. Each line is classified (requirement, index option, VCS, URL, local path, include, …) for the
policy step; nothing here decides what is allowed.

Files are read through modelfiles (inside the model directory, bounded). A line is quoted in a message only
when it comes from the model's own files, and cut short; a line of an operator-allowed include outside the
model directory is named by file and number only (it may be any file on the machine)."""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement

from mlflow_kserve.errors import NotServableError
from mlflow_kserve.mlmodel import ModelInfo
from mlflow_kserve.modelfiles import inside, present, quote, read_text, read_yaml, type_name

INDEX_OPTIONS = ("-i", "--index-url", "--extra-index-url", "-f", "--find-links", "--trusted-host", "--no-index")
INCLUDE_OPTIONS = ("-r", "--requirement")
CONSTRAINT_OPTIONS = ("-c", "--constraint")
EDITABLE_OPTIONS = ("-e", "--editable")
HASH_OPTION = "--hash"  # the one per-requirement option kept (the lock generates its own hashes anyway)
_VALUELESS = {"--no-index", "--pre", "--prefer-binary", "--require-hashes", "--no-deps"}
MAX_LINES = 10_000  # a model's requirement lines, all files together (real models: tens)
_RELOG = "log the model again with its requirements"
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
    #            | requirement-option (an option after a requirement other than --hash)
    requirement: Requirement | None = None
    target: Path | None = None  # for external-include: the file named (None for a URL)
    base: Path | None = None  # the directory of the file the line is in: relative paths start here
    external: bool = False  # from a file outside the model directory: never quoted

    @property
    def shown(self) -> str:
        """The line as messages show it: quoted and cut short, or not at all when it is not the model's."""
        return "a line of a file outside the model directory" if self.external else quote(self.text)


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
    root = reader.root
    name = info.env.get("virtualenv", "python_env.yaml")
    if present(root, name):
        python_env = inside(root, name, name)
        data = read_yaml(root, name)
        lines = []
        for index, dep in enumerate(_list(data, "dependencies", name)):
            where = f"{name}:dependencies[{index}]"
            lines += reader.parse_line(_scalar(dep, where), where, python_env.parent)
        python = _scalar(data.get("python") or info.python_version or "", f"{name}:python")
        return ModelEnv("python_env.yaml", python or None, tuple(lines))
    if present(root, "requirements.txt"):
        return ModelEnv("requirements.txt", info.python_version, tuple(reader.read_file(root / "requirements.txt")))
    name = info.env.get("conda", "conda.yaml")
    if present(root, name):
        return _from_conda(root, name, info, reader)
    return ModelEnv("none", info.python_version, ())


def _from_conda(root: Path, file: str, info: ModelInfo, reader: _Reader) -> ModelEnv:
    data = read_yaml(root, file)
    base = (root / file).parent
    python = info.python_version
    conda_only: list[str] = []
    lines: list[RequirementLine] = []
    for dep in _list(data, "dependencies", file):
        if isinstance(dep, dict) and "pip" in dep:
            for index, item in enumerate(_list(dep, "pip", f"{file}:dependencies")):
                where = f"{file}:pip[{index}]"
                lines += reader.parse_line(_scalar(item, where), where, base)
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


def _list(data: dict[str, Any], key: str, where: str) -> list[Any]:
    value = data.get(key) or []
    if not isinstance(value, list):
        raise NotServableError(
            f"{where}: {key!r} is a {type_name(value)}, not a list", "log the model again with MLflow"
        )
    return value


def _scalar(value: Any, where: str) -> str:
    if isinstance(value, (dict, list)):
        raise NotServableError(
            f"{where} is a {type_name(value)}, not a requirement line", "log the model again with MLflow"
        )
    return str(value)


class _Reader:
    def __init__(self, root: Path, follow_external: bool) -> None:
        self.root = root
        self.follow_external = follow_external
        self.seen: set[Path] = set()
        self.count = 0

    def read_file(self, path: Path, constraint: bool = False, external: bool = False) -> list[RequirementLine]:
        """``path`` is inside the model directory as written (links leaving it are refused by read_text), or,
        with ``external``, an include outside it that the operator allowed (read from its own folder)."""
        resolved = path.resolve()
        if resolved in self.seen:  # -r loops and diamonds: each file once
            return []
        self.seen.add(resolved)
        if external:
            text, label = read_text(path.parent, path.name), str(path)
        else:
            label = os.path.relpath(path, self.root)
            text = read_text(self.root, label)
        out: list[RequirementLine] = []
        for number, line in _logical_lines(text):
            parsed = self.parse_line(line, f"{label}:{number}", path.parent, external)
            if constraint:
                parsed = [replace(p, kind="constraint") if p.kind == "requirement" else p for p in parsed]
            out += parsed
        return out

    def parse_line(self, raw: str, source: str, base: Path, external: bool = False) -> list[RequirementLine]:
        text = " ".join(_strip_comment(raw).split())
        if not text:
            return []
        self.count += 1
        if self.count > MAX_LINES:
            raise NotServableError(f"the model's requirements have more than {MAX_LINES:,} lines (at {source})", _RELOG)
        if text.startswith("-"):
            return self._option(text, source, base, external)
        text, options = _split_requirement_options(text)
        kind, requirement = _classify(text, source, "a line of a file outside the model directory" if external else "")
        line = RequirementLine(text, source, kind, requirement, base=base.resolve(), external=external)
        return [line, *(_requirement_option(option, source, external) for option in options)]

    def _option(self, text: str, source: str, base: Path, external: bool) -> list[RequirementLine]:
        option, value = split_option(text)
        shown = "a line of a file outside the model directory" if external else quote(text)
        if option in INCLUDE_OPTIONS or option in CONSTRAINT_OPTIONS:
            constraint = option in CONSTRAINT_OPTIONS
            if not value:
                raise NotServableError(f"{source}: {shown} names no file", "fix the line in the model's requirements")
            if _REMOTE.match(value):
                if self.follow_external:
                    raise NotServableError(
                        f"{source}: {shown} includes a requirements file by URL, which mlflow-kserve never downloads",
                        "copy the file into the model directory and include it with a relative path",
                    )
                return [RequirementLine(text, source, "external-include", external=external)]
            written = Path(os.path.normpath(base / value))  # absolute values replace base
            if not written.is_relative_to(self.root):
                target = written.resolve()
                include = RequirementLine(text, source, "external-include", target=target, external=external)
                if not self.follow_external:
                    return [include]
                return [include, *self.read_file(target, constraint, external=True)]
            inside(self.root, written.relative_to(self.root), f"{source}: {shown}")  # a link leaving: exit 4
            if not written.is_file():
                raise NotServableError(
                    f"{source}: {shown} names a missing file", "log the model with that file in its directory"
                )
            return self.read_file(written, constraint)
        if option in INDEX_OPTIONS:
            return [RequirementLine(text, source, "index-option", external=external)]
        if option in EDITABLE_OPTIONS:
            return [RequirementLine(text, source, "editable", base=base.resolve(), external=external)]
        return [RequirementLine(text, source, "other-option", external=external)]


def _requirement_option(text: str, source: str, external: bool) -> RequirementLine:
    """An option written after a requirement (pip applies index options there to the whole install)."""
    kind = "index-option" if split_option(text)[0] in INDEX_OPTIONS else "requirement-option"
    return RequirementLine(text, source, kind, external=external)


def _classify(text: str, source: str, shown: str = "") -> tuple[str, Requirement | None]:
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
        detail = f" ({str(exc).splitlines()[0][:200]})" if not shown else ""
        raise NotServableError(
            f"{source}: {shown or quote(text)} is not a valid requirement{detail}",
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


def _split_requirement_options(text: str) -> tuple[str, list[str]]:
    """``pkg==1 ; marker --hash=sha256:… --index-url=X`` → (``pkg==1 ; marker``, options other than --hash).

    pip's rule (``break_args_options``): the options start at the first space-separated word beginning with
    ``-``. Each option keeps its value (``--index-url X`` or ``--index-url=X``)."""
    words = text.split(" ")
    start = next((i for i, word in enumerate(words) if word.startswith("-")), len(words))
    options: list[str] = []
    for word in words[start:]:
        if not word.startswith("-") and options and _awaits_value(options[-1]):
            options[-1] += f" {word}"
        else:
            options.append(word)  # an option, or a stray word (refused with the options)
    return " ".join(words[:start]), [o for o in options if split_option(o)[0] != HASH_OPTION]


def _awaits_value(text: str) -> bool:
    option, value = split_option(text)
    return not value and option not in _VALUELESS
