"""A model's files are data from a stranger. This module is the only way the steps read them:

- never through a symbolic link that leaves the model directory (fetch refuses such a model; ``read_text``
  refuses such a file: exit 4 naming the link, never the content of what it points at);
- never a file named by the model (MLmodel's ``env``, a ``-r`` line) outside the model directory, except an
  include the operator allowed (``--allow external-include``, see requirements.py);
- at most ``MAX_TEXT_BYTES`` per file (MLmodel, python_env.yaml, conda.yaml and requirement files are
  kilobytes; a 100 MB MLmodel is not a model, and parsing it would take minutes);
- YAML with libyaml's nesting limit and a budget of values after alias expansion (a "billion laughs" file
  is a few hundred bytes that expand to 10^9 strings when walked).

Links that stay inside the model directory are fine (fetch copies what they point at).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from mlflow_kserve.errors import NotServableError

MAX_TEXT_BYTES = 4 * 1024 * 1024
MAX_YAML_VALUES = 100_000  # scalars, lists and mappings, each alias expansion counted again
MAX_YAML_DEPTH = 100
QUOTE_CHARS = 120  # at most this much of a model's line is quoted in a message
_RELOG = "log the model again with MLflow"
_LINK_FIX = "replace the link with the file itself (a model must be self-contained), then log or copy it again"


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """SafeLoader (libyaml's when present: 7x faster, and it refuses nesting deeper than 1000 levels) that
    keeps floats as text: ``python: 3.10`` is Python 3.10, not the number 3.1."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:float"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_yaml(text: str) -> Any:
    """Parse MLflow's YAML text (MLmodel, python_env.yaml, conda.yaml); raises yaml.YAMLError."""
    return yaml.load(text, Loader=_Loader)  # a SafeLoader: no arbitrary objects


def present(root: Path, name: str | Path) -> bool:
    """A file (or a link, even one that leaves: reading it then says so) is at ``root/name``."""
    path = root / name
    return path.is_symlink() or path.is_file()


def inside(root: Path, name: str | Path, what: str) -> Path:
    """``root/name`` when it stays inside ``root`` (as written and after links); NotServableError otherwise.
    ``what`` says who named the path, e.g. "MLmodel's env.virtualenv"."""
    base = root.resolve()
    path = base / name
    if not Path(os.path.normpath(path)).is_relative_to(base):
        raise NotServableError(
            f"{what} names {quote(str(name))}, outside the model directory", f"{_RELOG}; keep its files inside"
        )
    if not path.resolve().is_relative_to(base):
        raise NotServableError(f"{_rel(base, path)} is a symbolic link that leaves the model directory", _LINK_FIX)
    return path


def read_text(root: Path, name: str | Path, what: str | None = None, limit: int = MAX_TEXT_BYTES) -> str:
    """The text of ``root/name``: inside the model directory, at most ``limit`` bytes, UTF-8."""
    path = inside(root, name, what or str(name))
    rel = _rel(root.resolve(), path)
    try:
        size = path.stat().st_size
        if size > limit:
            raise NotServableError(
                f"{rel} is {size / 1e6:.1f} MB; model metadata files are read up to {limit / 1e6:.0f} MB",
                f"{_RELOG}: {rel} holds metadata only, large data belongs in other artifacts",
            )
        with path.open("rb") as fh:
            data = fh.read(limit + 1)
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NotServableError(f"{rel} is not UTF-8 text (a binary file?)", _RELOG) from exc
    except OSError as exc:
        raise NotServableError(f"cannot read {rel} ({type(exc).__name__}: {exc.strerror})", _RELOG) from exc


def read_yaml(root: Path, name: str | Path, what: str | None = None) -> dict[str, Any]:
    """``root/name`` parsed as a YAML mapping (empty file: {}), bounded as the module says."""
    text = read_text(root, name, what)
    rel = str(name)
    try:
        data = load_yaml(text)
    except (yaml.YAMLError, RecursionError, ValueError) as exc:
        detail = str(exc).splitlines()[0][:QUOTE_CHARS] if str(exc) else ""
        raise NotServableError(f"{rel} is not readable YAML ({type(exc).__name__}: {detail})", _RELOG) from exc
    check_shape(data, rel)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise NotServableError(f"{rel} is not a YAML mapping (it is a {type_name(data)})", _RELOG)
    return data


def check_shape(data: Any, where: str) -> None:
    """NotServableError when ``data`` nests deeper than MAX_YAML_DEPTH or holds more than MAX_YAML_VALUES
    values once aliases are expanded (walked with a budget: a bomb costs MAX_YAML_VALUES steps, not 10^9)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    count = 0
    while stack:
        value, depth = stack.pop()
        count += 1
        if count > MAX_YAML_VALUES:
            raise NotServableError(
                f"{where} expands to more than {MAX_YAML_VALUES:,} values (YAML aliases nested in aliases?)", _RELOG
            )
        if depth > MAX_YAML_DEPTH:
            raise NotServableError(f"{where} nests values deeper than {MAX_YAML_DEPTH} levels", _RELOG)
        if isinstance(value, dict):
            stack.extend((item, depth + 1) for pair in value.items() for item in pair)
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)


def check_links(root: Path) -> None:
    """NotServableError (exit 4) naming the first symbolic link under ``root`` that leaves it, dangles or loops.

    Fetch calls it on a local model before copying it (the copy follows links) and on every download."""
    base = root.resolve()
    for folder, dirs, files in os.walk(base):  # does not descend into links to directories
        for name in sorted((*dirs, *files)):
            link = Path(folder, name)
            if link.is_symlink():
                _check_link(base, link)


def _check_link(base: Path, link: Path) -> None:
    rel = _rel(base, link)
    try:
        target = link.resolve(strict=True)
    except (OSError, RuntimeError) as exc:  # dangling, or a loop of links (RuntimeError before Python 3.13)
        raise NotServableError(
            f"{rel} is a symbolic link to nothing (dangling, or a loop of links)", _LINK_FIX
        ) from exc
    if not target.is_relative_to(base):
        raise NotServableError(
            f"{rel} is a symbolic link that leaves the model directory; links out of a model are never followed",
            _LINK_FIX,
        )
    if target.is_dir() and link.parent.resolve().is_relative_to(target):
        raise NotServableError(f"{rel} is a symbolic link to a directory that contains it (a loop)", _LINK_FIX)


def listing(folder: Path, limit: int = 8) -> str:
    """What ``folder`` holds, for a message: "found: a/, b.pkl" (folders end in '/'), at most ``limit`` names."""
    if not folder.exists():
        return "nothing there"
    names = sorted(p.name + ("/" if p.is_dir() and not p.is_symlink() else "") for p in folder.iterdir())
    if not names:
        return "found: an empty directory"
    return "found: " + ", ".join(names[:limit]) + (" …" if len(names) > limit else "")


def models_inside(root: Path, max_depth: int = 3, limit: int = 3, budget: int = 5000) -> list[str]:
    """The folders under ``root`` holding an MLmodel, shallowest first ("iris-model/"), for a message that points
    at the model a user meant. Breadth-first, at most ``max_depth`` levels, never through a link, never into a
    model found (its own folders are artifacts), at most ``budget`` entries looked at: a URI pointing at a big
    tree costs milliseconds, not a walk of it."""
    found: list[str] = []
    level = [root]
    for _depth in range(max_depth):
        below: list[Path] = []
        for folder in level:
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError:
                continue
            for entry in entries:
                budget -= 1
                if budget < 0:
                    return found
                if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
                    continue
                path = Path(entry.path)
                if present(path, "MLmodel"):
                    found.append(path.relative_to(root).as_posix() + "/")
                    if len(found) >= limit:
                        return found
                else:
                    below.append(path)
        level = below
    return found


def quote(text: str) -> str:
    """``repr`` of a model's text for a message, cut to QUOTE_CHARS characters (a 200,000-character
    requirement is named, not printed)."""
    if len(text) <= QUOTE_CHARS:
        return repr(text)
    return repr(text[:QUOTE_CHARS]) + f"… ({len(text):,} characters)"


def shorten(text: str) -> str:
    """``text`` cut to QUOTE_CHARS characters, unquoted."""
    return text if len(text) <= QUOTE_CHARS else f"{text[:QUOTE_CHARS]}… ({len(text):,} characters)"


def type_name(value: Any) -> str:
    return {dict: "mapping", list: "list", str: "string", bool: "boolean", int: "number"}.get(
        type(value), type(value).__name__
    )


def _rel(base: Path, path: Path) -> str:
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return path.name
