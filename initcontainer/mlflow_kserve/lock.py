"""Step 3: resolve the requirement set to exact versions with hashes.

uv (`uv pip compile --generate-hashes`) for the default installer, pip-tools (`pip-compile --generate-hashes`)
for ``--installer pip``. Failures are classified: a conflict is ConflictError (exit 6, naming what uv/pip said
is in conflict); the index's and the disk's failures are classified by tool_failures; a failed build is
InstallError (exit 7).
"""

from __future__ import annotations

import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from packaging.utils import canonicalize_name

from mlflow_kserve import procs
from mlflow_kserve.errors import ConflictError, InstallError
from mlflow_kserve.files import write_atomic
from mlflow_kserve.index import IndexConfig
from mlflow_kserve.tool_failures import index_or_disk_failure
from mlflow_kserve.tools import pip_env, uv_binary, uv_env

_PINNED = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")
CONFLICT_HINT = "relax the conflicting pins in the model's requirements, or pass --constraint to choose versions"
_BUILD = re.compile(r"Failed to build|Failed to prepare distributions|metadata-generation-failed", re.I)


@dataclass(frozen=True)
class LockRequest:
    requirements: tuple[str, ...]
    constraints: tuple[str, ...] = ()
    excludes: tuple[str, ...] = ()  # package names left out of the resolution (the --slim swap)
    index: IndexConfig = field(default_factory=IndexConfig)
    only_binary: tuple[str, ...] = ()  # packages taken only as wheels (optional ones: never built in the pod)
    python: str = sys.executable  # the interpreter the venv is built from: its markers decide

    def cache_parts(self, python_version: str, platform: str) -> dict[str, object]:
        """What determines the resolution: the environment cache's resolution memo is keyed on it."""
        parts: dict[str, object] = {
            "requirements": sorted(self.requirements),
            "constraints": sorted(self.constraints),
            "excludes": sorted(self.excludes),
            "index": self.index.cache_parts(),
            "python": python_version,
            "platform": platform,
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
    with tempfile.TemporaryDirectory(prefix="mlflow-kserve-lock-") as tmp:
        work = Path(tmp)
        req_in = work / "requirements.in"
        req_in.write_text("\n".join(request.requirements) + "\n")
        out = work / "requirements.lock"
        args: list[str | Path] = []
        if request.constraints:
            constraints = work / "constraints.txt"
            constraints.write_text("\n".join(request.constraints) + "\n")
            args += ["-c", constraints]
        if installer == "uv":
            if request.excludes:
                excludes = work / "excludes.txt"
                excludes.write_text("\n".join(request.excludes) + "\n")
                args += ["--excludes", excludes]
            binary = [a for name in request.only_binary for a in ("--only-binary", name)]
            cmd = [
                uv_binary(), "pip", "compile", "--generate-hashes", "--python", request.python,
                "--no-header", "--quiet", "-o", out, req_in, *args, *binary, *request.index.uv_args(),
            ]  # fmt: skip
            env = uv_env(cache_dir)
        else:
            binary = ["--pip-args", f"--only-binary={','.join(request.only_binary)}"] if request.only_binary else []
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


def _classify(result: procs.Result, installer: str) -> Exception:
    text = result.output
    lines = result.lines
    failure = index_or_disk_failure(text, installer, "resolving")
    if failure is not None:
        return failure
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
