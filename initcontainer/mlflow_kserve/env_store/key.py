"""The store key: a digest of the inputs of the resolution, so a pod finds its environment without the index.

The local cache (cache.py) names an environment by its lock text, which a resolve produces, and a resolve asks
the package index. A store read must ask nothing of the index (that is its point: an index outage or rate limit
must not stop a scale-up), so the store names an environment by what goes INTO the resolution and the install:

- ``candidates``: for each serving backend the plan would try, in the order it tries them, that backend's lock
  request (``LockRequest.cache_parts``: the model's requirement set with the backend's pins and the operator's
  extras, the constraints, the excludes of ``--slim``, the interpreter's version and platform, and whatever the
  lock request grows, e.g. a resolution date or a model's own lock file). Built from the same function that
  builds the request the lock step resolves, so anything that changes the resolution changes the key by
  construction: a backend's pins (a new serving-stack row, grpcio for a gRPC option), a reordered ``auto``, a
  new field of the request. The candidates, not the chosen backend, are keyed: which one ``auto`` takes is
  itself an outcome of resolving (MLServer's pins may conflict with the model's); the entry records it.
- ``backend``: what the operator asked for (auto, mlserver, mlflow), ``slim`` and the ``installer``.
- ``interpreter``: the base interpreter's path, version and platform (with libc). The venv's ``bin/python``
  links to that path: the reading pod's image must have it.
- ``index``: extra indexes and find-links, which add packages to what the resolver sees. The primary index URL
  (``--index-url``, ``UV_INDEX_URL``) is left out: it says where packages are downloaded from, not what they
  are (the lock's hashes pin the bytes), and the store exists for the pod whose index is down, rate-limited or
  another mirror. An operator moving to an index that serves *other* packages under the same names should use
  another store prefix.

Left out on purpose:

- the mount path. Venvs are relocatable (installers.py): the scripts find their python relative to themselves,
  ``pyvenv.cfg`` names only the base interpreter, and a build already happens in a temporary folder
  (``.venv-build-*`` or the cache's ``tmp/``) and is renamed. Bytecode files are validated by their source's
  mtime and size, which the archive keeps, not by path, and the import system rewrites a cached code object's
  file name to where the source now is (importlib's ``_fix_co_filename``). Checked on the iris model's MLServer
  venv built in the cache's ``tmp/``: no file but bytecode (2,478 .pyc files, their code objects' file names) holds
  the build's path. So ``/mnt/env/venv`` (chart) and ``/mnt/models/.env/venv`` (KServe-native mode) read the same
  entry, and the tests' pod B serves from a folder pod A never saw.
- the model's own files beyond its requirements: two versions of a model with the same requirements share an
  environment. The manifest lists the models that loaded in it when it was built (their digest); another model
  is verified in the pod as on any cache hit.
- ``--verify`` and the versions of uv and of mlflow-kserve: they change files beside the packages (bytecode, an
  INSTALLER record), not the packages. A change of this module's layout or of how venvs are built bumps
  ``FORMAT`` instead.

A requirement the key cannot name by its text (a local path, a URL, a VCS reference, an editable install, local
find-links: their content can change under the same text) makes the store step out for that model
(``unkeyable``): it builds as without a store.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement

from mlflow_kserve.interpreter import Interpreter
from mlflow_kserve.lock import LockRequest

FORMAT = 2  # of the key, the layout and the archive: a change makes every old entry a miss (2: the archive in parts)


@dataclass(frozen=True)
class StoreKey:
    digest: str  # sha256 of ``parts`` as canonical JSON: the entry's folder in the store
    parts: dict[str, Any]  # what was hashed, recorded in the manifest (why two pods miss each other)

    @property
    def short(self) -> str:
        return self.digest[:12]


def store_key(
    candidates: Sequence[tuple[str, LockRequest]],
    *,
    requested_backend: str,
    installer: str,
    slim: bool,
    interpreter: Interpreter,
) -> StoreKey:
    """The key of the environment the lock step would build from ``candidates`` ((backend, lock request) in the
    order the lock step tries them)."""
    requests = []
    index: dict[str, Any] = {}
    for backend, request in candidates:
        parts = request.cache_parts(interpreter.version, interpreter.platform)
        index = dict(parts.pop("index", {}))
        index.pop("index_url", None)  # where packages come from, not what they are (module docstring)
        requests.append({"backend": backend, "request": parts})
    parts = {
        "format": FORMAT,
        "backend": requested_backend,
        "candidates": requests,
        "index": index,
        "installer": installer,
        "slim": slim,
        "interpreter": {"path": interpreter.path, "version": interpreter.version, "platform": interpreter.platform},
    }
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return StoreKey(hashlib.sha256(text.encode()).hexdigest(), parts)


def unkeyable(candidates: Sequence[tuple[str, LockRequest]]) -> str | None:
    """Why the key cannot name these requests' packages by their text, or None when it can."""
    for _backend, request in candidates:
        for line in (*request.requirements, *request.constraints):
            reason = _unnamed(line)
            if reason:
                return f"{reason}: {line[:120]!r}"
        for link in request.index.find_links:
            if not link.startswith(("http://", "https://")):
                return f"local find-links {link[:120]!r}"
    return None


def _unnamed(line: str) -> str | None:
    try:
        requirement = Requirement(line)
    except InvalidRequirement:
        return "a requirement that is a path or an editable install"
    if requirement.url:
        return "a requirement from a URL, a VCS or a local path"
    return None
