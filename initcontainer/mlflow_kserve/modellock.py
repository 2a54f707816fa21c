"""The model's own lock, when it carries one: ``uv.lock`` with its ``pyproject.toml`` (what MLflow >= 3.17 copies
into a pyfunc model logged from a uv project, ``MLFLOW_LOG_UV_FILES``), else ``pylock.toml`` (PEP 751).

The environment is then exactly what the lock resolves to for the serving interpreter:

- ``uv.lock`` is exported to PEP 751 by uv itself (``uv export --frozen --no-dev --no-emit-project --format
  pylock.toml``: the groups MLflow's own restore installs, ``uv sync --frozen --no-dev``), in a scratch folder
  (the model's folder is never written);
- the PEP 751 lock is parsed and its packages selected for the interpreter's marker environment and wheel tags
  by ``packaging.pylock`` (markers, requires-python, environments);
- each selected package becomes one pinned line with every hash the lock gives for it, so the install step
  installs exactly those versions, hash-checked (``--require-hashes``), from the operator's index: a lock naming
  PyPI's files installs the same bytes through a mirror.

The dependency policy applies to the lock as to requirement lines: a package taken from an index other than
PyPI and the operator's is refused (exit 5, naming the index) unless the operator allows the model's index
options; VCS, direct-URL and local-path entries need their allowance. A lock that does not parse is exit 4; one
that has nothing for this interpreter (requires-python, environments, no wheel) is exit 6.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from packaging.pylock import (
    PackageArchive,
    PackageDirectory,
    PackageSdist,
    PackageVcs,
    PackageWheel,
    Pylock,
    PylockSelectError,
    PylockValidationError,
)
from packaging.tags import Tag, compatible_tags, cpython_tags, platform_tags, sys_tags

from mlflow_kserve import procs
from mlflow_kserve.errors import NotServableError, ResolveError
from mlflow_kserve.index import IndexConfig
from mlflow_kserve.interpreter import Interpreter
from mlflow_kserve.modelfiles import inside, present, read_text, shorten
from mlflow_kserve.policy import check_lock_entry, check_lock_index
from mlflow_kserve.tools import uv_binary, uv_env

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

UV_LOCK, PYPROJECT, PYLOCK = "uv.lock", "pyproject.toml", "pylock.toml"
MAX_LOCK_BYTES = 64 * 1024 * 1024  # a uv.lock of a large project (every wheel of every platform) is megabytes
PYPI = ("https://pypi.org/simple", "https://pypi.python.org/simple")
_RELOG = "log the model again from its uv project (or with a valid pylock.toml), or remove the broken lock file"


@dataclass(frozen=True)
class LockedPackage:
    name: str  # canonical
    version: str
    line: str  # the requirement line the install step reads, hashes included


@dataclass(frozen=True)
class ModelLock:
    source: str  # "uv.lock" or "pylock.toml"
    digest: str  # sha256 of the lock file(s) as the model carries them (uv.lock with its pyproject.toml)
    packages: tuple[LockedPackage, ...]  # what the lock resolves to for the serving interpreter, by name
    indexes: tuple[str, ...] = ()  # indexes other than PyPI the lock takes packages from (allowed ones)

    @property
    def text(self) -> str:
        """The lock as the install step reads it: one pinned line per package, with the lock's hashes."""
        return "".join(package.line for package in self.packages)

    @property
    def pins(self) -> tuple[str, ...]:
        return tuple(f"{p.name}=={p.version}" for p in self.packages if p.version)

    def versions(self) -> dict[str, str]:
        return {p.name: p.version for p in self.packages}


def find(model_dir: Path) -> tuple[str | None, str | None]:
    """(which lock the model carries: "uv.lock" or "pylock.toml" or None, a warning). A uv.lock without its
    pyproject.toml is not a uv project (MLflow copies both, and uv needs both): ignored, with a warning."""
    if present(model_dir, UV_LOCK):
        if present(model_dir, PYPROJECT):
            return UV_LOCK, None
        warning = f"the model has {UV_LOCK} but no {PYPROJECT} (MLflow copies both): its {UV_LOCK} is ignored"
        return (PYLOCK if present(model_dir, PYLOCK) else None), warning
    return (PYLOCK if present(model_dir, PYLOCK) else None), None


def read(
    model_dir: Path, source: str, interpreter: Interpreter, index: IndexConfig, allow: frozenset[str]
) -> ModelLock:
    """The model's lock ``source`` (from ``find``), selected for ``interpreter`` and checked against the policy."""
    files = (UV_LOCK, PYPROJECT) if source == UV_LOCK else (PYLOCK,)
    digest = hashlib.sha256()
    for name in files:
        digest.update(f"{name}\0".encode() + read_text(model_dir, name, limit=MAX_LOCK_BYTES).encode() + b"\0")
    text = _export(model_dir) if source == UV_LOCK else read_text(model_dir, PYLOCK, limit=MAX_LOCK_BYTES)
    lock = _parse(text, source)
    try:
        selected = list(lock.select(environment=interpreter.marker_environment, tags=_tags(interpreter)))
    except PylockSelectError as exc:
        raise ResolveError(
            f"the model's {source} has nothing for the serving interpreter (Python {interpreter.version}, "
            f"{interpreter.platform}): {shorten(str(exc))}",
            "serve it with the images of the Python it was locked for (chart: pythonVersion)",
        ) from exc
    operator = {_normalized(u) for u in (index.index_url, *index.extra_index_urls) if u}
    packages: list[LockedPackage] = []
    indexes: list[str] = []
    for package, dist in selected:
        what = f"{package.name} {package.version or ''}".strip()
        line = _line(package, dist, source, what, model_dir, allow)
        if package.index and _normalized(package.index) not in (*PYPI, *operator):
            check_lock_index(source, what, _normalized(package.index), "index-options" in allow)
            indexes.append(package.index)
        packages.append(LockedPackage(str(package.name), str(package.version or ""), line))
    packages.sort(key=lambda p: p.name)
    return ModelLock(source, digest.hexdigest(), tuple(packages), tuple(dict.fromkeys(indexes)))


def _export(model_dir: Path) -> str:
    """uv.lock as PEP 751 text, by ``uv export --frozen`` (reads the two files, never the network) in a copy."""
    with tempfile.TemporaryDirectory(prefix="mlflow-kserve-uvlock-") as tmp:
        work = Path(tmp)
        for name in (UV_LOCK, PYPROJECT):
            shutil.copyfile(inside(model_dir, name, name), work / name)
        cmd = [
            uv_binary(), "export", "--frozen", "--no-dev", "--no-emit-project", "--format", "pylock.toml",
            "--no-header", "--quiet", "--output-file", work / PYLOCK,
        ]  # fmt: skip
        result = procs.run(cmd, env={**uv_env(None), "UV_OFFLINE": "1"}, cwd=work)
        if result.returncode != 0 or not (work / PYLOCK).is_file():
            lines = [line.strip() for line in result.lines if line.strip()]
            cause = lines[-1] if lines else f"exit code {result.returncode}"
            raise NotServableError(f"the model's {UV_LOCK} cannot be read (uv export: {shorten(cause)})", _RELOG)
        return (work / PYLOCK).read_text()


def _parse(text: str, source: str) -> Pylock:
    try:
        return Pylock.from_dict(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        raise NotServableError(f"the model's {source} is not TOML ({shorten(str(exc))})", _RELOG) from exc
    except PylockValidationError as exc:
        raise NotServableError(f"the model's {source} is not a PEP 751 lock ({shorten(str(exc))})", _RELOG) from exc


def _line(package: Any, dist: Any, source: str, what: str, model_dir: Path, allow: frozenset[str]) -> str:
    """The requirement line for one selected package; entries the policy rules on are checked first."""
    name = str(package.name)
    if isinstance(dist, PackageVcs):
        check_lock_entry(source, what, "vcs", allow)
        url = dist.url or (Path(model_dir, dist.path or "").resolve().as_uri())
        subdirectory = f"#subdirectory={dist.subdirectory}" if dist.subdirectory else ""
        return f"{name} @ {dist.type}+{url}@{dist.commit_id}{subdirectory}\n"
    if isinstance(dist, PackageDirectory):
        check_lock_entry(source, what, "editable" if dist.editable else "local-path", allow)
        return f"{'-e ' if dist.editable else ''}{Path(model_dir, dist.path).resolve()}\n"
    if isinstance(dist, PackageArchive):
        check_lock_entry(source, what, "url" if dist.url else "local-path", allow)
        location = dist.url or Path(model_dir, dist.path or "").resolve().as_uri()
        return f"{name} @ {location}{_hashes(dist.hashes)}\n"
    assert isinstance(dist, (PackageWheel, PackageSdist))
    if dist.url is None and dist.path is not None:
        check_lock_entry(source, what, "local-path", allow)
    files = [*(package.wheels or ()), *([package.sdist] if package.sdist else [])]
    return f"{name}=={package.version}{_hashes(*(file.hashes for file in files))}\n"


def _hashes(*mappings: Any) -> str:
    """Every hash of the files given (a package's wheels and sdist): the installer checks whichever it takes."""
    found = dict.fromkeys(f"{algorithm}:{value}" for hashes in mappings for algorithm, value in sorted(hashes.items()))
    return "".join(f" \\\n    --hash={h}" for h in found)


def _tags(interpreter: Interpreter) -> list[Tag]:
    """The wheel tags of the serving interpreter: this process's own when it is the same Python minor (the init
    image's base interpreter is the serving one), else CPython's for that minor on this machine's platforms."""
    major, minor = (int(part) for part in interpreter.version.split(".")[:2])
    if (major, minor) == sys.version_info[:2]:
        return list(sys_tags())
    platforms = list(platform_tags())
    return [
        *cpython_tags((major, minor), platforms=platforms),
        *compatible_tags((major, minor), f"cp{major}{minor}", platforms),
    ]


def _normalized(url: str) -> str:
    """An index URL without credentials and trailing slash, host in lower case: for comparing and naming."""
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").lower() + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme.lower(), host, parts.path.rstrip("/"), "", ""))
