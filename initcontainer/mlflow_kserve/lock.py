"""Step 3: resolve the requirement set to exact versions with hashes.

uv (`uv pip compile --generate-hashes`) for the default installer, pip-tools (`pip-compile --generate-hashes`)
for ``--installer pip``. Failures are classified: a conflict is ConflictError (exit 6, naming what uv/pip said
is in conflict); the index's and the disk's failures are classified by tool_failures; a failed build is
InstallError (exit 7).

How, by the request's resolution mode (resolution.py):

- ``now``: the whole set in one resolution, the index as it is.
- as of a date (``model``, ``date``): first the model's own requirements alone, with every file uploaded after
  the cut-off excluded (uv ``--exclude-newer``, pip ``--uploaded-prior-to``): the packages they resolve to are
  the model's. Then the whole set, in which each of those packages keeps the cut-off (uv: ``--exclude-newer-package
  <name>=<cut-off>``; pip, which has no per-package cut-off: ``<name><=<version>`` it resolved to as of the date)
  and nothing else has one. So what is not the model's, everything the operator and the backend add and what only
  they bring in, resolves as of now: exempt by construction (``LockRequest.exempt``: every requirement and
  constraint that is not the model's own), whatever adds it. A set with nothing added is the first resolution.
  (Dating all but the additions' names fails old models: mlserver 1.6.1 needs pydantic 2.7.1, from April 2024.)
- ``lock``: the model's own lock, as locked (modellock.py), with its hashes. What is added to it is resolved
  around it, each locked version pinned (``==``): a locked package never moves; a conflict is exit 6.
"""

from __future__ import annotations

import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from mlflow_kserve import procs
from mlflow_kserve.errors import ConflictError, InstallError, ResolveError
from mlflow_kserve.files import write_atomic
from mlflow_kserve.index import IndexConfig
from mlflow_kserve.tool_failures import index_or_disk_failure
from mlflow_kserve.tools import pip_env, uv_binary, uv_env

_PINNED = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")
CONFLICT_HINT = "relax the conflicting pins in the model's requirements, or pass --constraint to choose versions"
LOCK_HINT = (
    "serve it with a backend that adds nothing (--backend mlflow), or lock the model's project with versions the "
    "backend accepts"
)
_NO_UPLOAD_TIME = re.compile(r"Index \S+ does not provide upload-time metadata")
_BUILD = re.compile(r"Failed to build|Failed to prepare distributions|metadata-generation-failed", re.I)


@dataclass(frozen=True)
class LockRequest:
    requirements: tuple[str, ...]  # everything to resolve: the model's, the backend's, the operator's
    constraints: tuple[str, ...] = ()
    excludes: tuple[str, ...] = ()  # package names left out of the resolution (the --slim swap)
    index: IndexConfig = field(default_factory=IndexConfig)
    only_binary: tuple[str, ...] = ()  # packages taken only as wheels (optional ones: never built in the pod)
    python: str = sys.executable  # the interpreter the venv is built from: its markers decide
    # How (resolution.py), as plain fields a cache key can take: now | model | date | lock; the cut-off (RFC 3339
    # UTC) for model and date; the sha256 of the model's lock files for lock.
    resolve_mode: str = "now"
    resolve_as_of: str | None = None
    lock_digest: str | None = None
    lock_source: str | None = None  # lock: "uv.lock" or "pylock.toml", for messages
    # The model's own part of requirements / constraints: resolved as of the cut-off, or taken from its lock.
    model_requirements: tuple[str, ...] = ()
    model_constraints: tuple[str, ...] = ()
    model_lock_text: str | None = None  # lock: the model's lock for this interpreter, one hashed line per package

    @property
    def exempt(self) -> tuple[str, ...]:
        """Names of what is not the model's own (requirements and constraints the backend or the operator add):
        never held to the cut-off. Derived, so any addition is exempt however it got into the request."""
        added = set(self.requirements) - set(self.model_requirements)
        added |= set(self.constraints) - set(self.model_constraints)
        return tuple(sorted({name for name in map(requirement_name, added) if name}))

    def cache_parts(self, python_version: str, platform: str) -> dict[str, object]:
        """What determines the resolution: the environment cache's resolution memo is keyed on it. A ``now``
        resolution is never memoised (pipeline._lock); the mode and cut-off keep model and date ones apart."""
        parts: dict[str, object] = {
            "requirements": sorted(self.requirements),
            "constraints": sorted(self.constraints),
            "excludes": sorted(self.excludes),
            "index": self.index.cache_parts(),
            "python": python_version,
            "platform": platform,
            "resolution": {"mode": self.resolve_mode, "as_of": self.resolve_as_of, "lock_digest": self.lock_digest},
            "model_requirements": sorted(self.model_requirements),
            "model_constraints": sorted(self.model_constraints),
        }
        if self.only_binary:  # only when set: the keys of every other resolution stay as they were
            parts["only_binary"] = sorted(self.only_binary)
        return parts


@dataclass(frozen=True)
class Lock:
    text: str

    @property
    def packages(self) -> dict[str, str]:
        """Canonical name -> pinned version."""
        out: dict[str, str] = {}
        for line in self.text.splitlines():
            match = _PINNED.match(line.strip())
            if match:
                out[canonicalize_name(match.group(1))] = match.group(2)
        return out

    def write(self, path: Path) -> None:
        write_atomic(path, self.text)


def resolve(request: LockRequest, installer: str, cache_dir: Path | None = None) -> Lock:
    """Resolve ``request`` with uv or pip-tools; raise ResolveError / InstallError on failure.

    ``cache_dir``: the installer's download cache (uv's or pip's), on the shared cache volume."""
    if request.resolve_mode == "lock":
        return _around_lock(request, installer, cache_dir)
    if request.resolve_as_of is None:
        return _compile(request, request.requirements, request.constraints, installer, cache_dir)
    try:
        return _as_of(request, request.resolve_as_of, installer, cache_dir)
    except ConflictError as exc:
        hint = (
            f"{exc.hint}; files uploaded after {request.resolve_as_of} were not considered for the model's own "
            "requirements: a later date may resolve, and an index without upload times (PEP 700) offers none as of "
            "any date: use --resolve-as-of now with it"
        )
        raise ConflictError(exc.detail, exc.installer, hint) from exc


def _as_of(request: LockRequest, cutoff: str, installer: str, cache_dir: Path | None) -> Lock:
    """The model's own set as of ``cutoff``; then, if anything is added, the whole set with those packages held to
    it (the module's docstring says why in two steps)."""
    dated = _compile(
        request, request.model_requirements, request.model_constraints, installer, cache_dir, cutoff=cutoff
    )
    exempt = set(request.exempt)
    if not exempt:
        return dated
    held = {name: version for name, version in dated.packages.items() if name not in exempt}
    if installer == "uv":
        per_package = [f"{name}={cutoff}" for name in sorted(held)]
        return _compile(request, request.requirements, request.constraints, installer, cache_dir, per_package)
    bounds = tuple(f"{name}<={version}" for name, version in sorted(held.items()))
    return _compile(request, request.requirements, (*request.constraints, *bounds), installer, cache_dir)


def _around_lock(request: LockRequest, installer: str, cache_dir: Path | None) -> Lock:
    """The model's lock as it is, plus what is added resolved with every locked version pinned."""
    assert request.model_lock_text is not None
    locked = Lock(request.model_lock_text)
    if set(request.requirements) == set(request.model_requirements) and not request.constraints:
        return locked
    pins = locked.packages  # each is required with ==, so the resolver cannot move it: it fails instead
    try:
        joint = _compile(request, request.requirements, request.constraints, installer, cache_dir)
    except ConflictError as exc:
        named = [f"{name}=={version}" for name, version in pins.items() if _mentions(exc.detail, name)]
        side = f"the model's {request.lock_source or 'lock'} pins {', '.join(named) or 'its packages'}"
        detail = f"{side} (a locked version never moves): {exc.detail}"
        raise ConflictError(detail, exc.installer, LOCK_HINT) from exc
    added = [block for name, block in _blocks(joint.text) if name not in pins]
    return Lock(request.model_lock_text + "".join(added))


def _mentions(text: str, name: str) -> bool:
    """Whether the resolver's explanation names the project ``name`` (in any of its spellings)."""
    spelled = r"[-_.]".join(re.escape(part) for part in name.split("-"))
    return re.search(rf"(?<![\w.-]){spelled}(?![\w.-]*[a-z])", text, re.IGNORECASE) is not None


def _blocks(text: str) -> list[tuple[str, str]]:
    """(canonical name, its lines) per package of a resolver's output: a pinned line and what follows it."""
    out: list[tuple[str, list[str]]] = []
    for line in text.splitlines(keepends=True):
        match = _PINNED.match(line)
        if match:
            out.append((canonicalize_name(match.group(1)), [line]))
        elif out:
            out[-1][1].append(line)
    return [(name, "".join(lines)) for name, lines in out]


def _compile(
    request: LockRequest,
    requirements: tuple[str, ...],
    constraints: tuple[str, ...],
    installer: str,
    cache_dir: Path | None,
    per_package: list[str] | None = None,
    cutoff: str | None = None,
) -> Lock:
    """One resolution of ``requirements`` under ``constraints``: with ``cutoff``, no file uploaded after it;
    ``per_package`` (uv only): ``name=cut-off`` for the packages held to it."""
    with tempfile.TemporaryDirectory(prefix="mlflow-kserve-lock-") as tmp:
        work = Path(tmp)
        req_in = work / "requirements.in"
        req_in.write_text("\n".join(requirements) + "\n")
        out = work / "requirements.lock"
        args: list[str | Path] = []
        if constraints:
            constraints_file = work / "constraints.txt"
            constraints_file.write_text("\n".join(constraints) + "\n")
            args += ["-c", constraints_file]
        if installer == "uv":
            if request.excludes:
                excludes = work / "excludes.txt"
                excludes.write_text("\n".join(request.excludes) + "\n")
                args += ["--excludes", excludes]
            if cutoff:
                args += ["--exclude-newer", cutoff]
            for value in per_package or ():
                args += ["--exclude-newer-package", value]
            binary = [a for name in request.only_binary for a in ("--only-binary", name)]
            cmd = [
                uv_binary(), "pip", "compile", "--generate-hashes", "--python", request.python,
                "--no-header", "--quiet", "-o", out, req_in, *args, *binary, *request.index.uv_args(),
            ]  # fmt: skip
            env = uv_env(cache_dir)
        else:
            pip_args = [f"--uploaded-prior-to={cutoff}"] if cutoff else []  # pip-compile takes one --pip-args
            if request.only_binary:
                pip_args.append(f"--only-binary={','.join(request.only_binary)}")
            binary = ["--pip-args", " ".join(pip_args)] if pip_args else []
            cmd = [
                sys.executable, "-m", "piptools", "compile", "--generate-hashes", "--no-header",
                "--strip-extras", "--allow-unsafe", "-o", out, req_in, *args, *binary,
                *request.index.pip_args(),
            ]  # fmt: skip
            env = pip_env(cache_dir)
        result = procs.run(cmd, env=env, cwd=work)
        if result.returncode != 0:
            raise _classify(result, installer)
        return Lock(out.read_text())


def requirement_name(text: str) -> str:
    """The canonical project name of a requirement or constraint line; "" for anything else."""
    try:
        return canonicalize_name(Requirement(text).name)
    except InvalidRequirement:
        return ""


def _classify(result: procs.Result, installer: str) -> Exception:
    text = result.output
    lines = result.lines
    failure = index_or_disk_failure(text, installer, "resolving")
    if failure is not None:
        return failure
    undated = _NO_UPLOAD_TIME.search(text)
    if undated:  # pip says so; uv excludes such files and reports what is left (a conflict, with the date's hint)
        return ResolveError(
            f"the package index gives no upload times (PEP 700), so {installer} cannot resolve as of a date "
            f"({undated.group(0)})",
            "use --resolve-as-of now with this index, or an index that publishes upload times (PyPI's JSON API does)",
        )
    if _BUILD.search(text):
        return InstallError(
            f"a package failed to build while resolving ({installer}): {_cause(lines[-1] if lines else '')}",
            "pin a version with a wheel for this Python, or add build dependencies via --extra-requirement",
        )
    hint = CONFLICT_HINT
    if installer == "pip" and "(from versions: none)" in text:  # pip-compile prints no HTTP errors
        hint += "; 'versions: none' can also mean the index did not answer or refused access: check it"
    return ConflictError(_conflict(lines), installer, hint)


def _cause(line: str) -> str:
    return re.sub(r"^\s*(?:error|cause|ERROR):\s*", "", line).strip()


def _conflict(lines: list[str]) -> str:
    """The resolver's explanation, joined to one line (uv: the 'Because …' sentences; pip: the conflict)."""
    keep: list[str] = []
    for line in lines:
        text = _cause(line)
        if not text or text.startswith(("No solution found", "hint:")) or text.lower().startswith("warning"):
            continue
        if text.startswith(("Because", "And because", "we can conclude")) or keep:
            keep.append(text)
        elif re.search(r"conflict|ResolutionImpossible|Could not find a version|requires|cannot install", text):
            keep.append(text)
    summary = " ".join(keep) or (lines[-1] if lines else "no detail from the resolver")
    return summary[:1500]
