"""Reading and writing entries: one environment per key, a manifest written last.

Layout under the store URI::

    <key>/manifest.json               written last: names one build and the sha256 and size of its files
    <key>/<build>/venv.tar.zst        the venv (archive.py)
    <key>/<build>/requirements.lock   the lock it was installed from
    <key>/<build>/report.json         the building init's report

A build writes its own ``<build>/`` folder (a new name each time), then the manifest: a reader sees a whole
entry or none, and two pods publishing the same key at once each leave a complete entry; the last manifest
wins. Nothing is deleted: an entry replaced by a later build leaves its folder behind (a lifecycle rule on the
bucket can expire ``*/*/venv.tar.zst`` older than the newest).

Every way a read can go wrong is a ``StoreFault`` whose ``kind`` the init log and report.json name: ``miss``,
``unreachable``, ``denied``, ``unreadable manifest``, ``missing archive``, ``truncated`` (an object shorter than
its manifest says, or a connection that ended before it), ``digest mismatch``, ``corrupt archive``, ``disk full``,
``client missing``. The pipeline then builds as without a store.
"""

from __future__ import annotations

import errno
import hashlib
import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from mlflow_kserve import __version__
from mlflow_kserve.env_store.archive import ARCHIVE_NAME, FORMAT_NOTES, UnpackError, pack, sha256_of, unpack
from mlflow_kserve.env_store.backend import DEFAULT_BOUNDS, Backend, Bounds, open_backend
from mlflow_kserve.env_store.key import FORMAT, StoreKey
from mlflow_kserve.errors import redact
from mlflow_kserve.files import discard

MANIFEST = "manifest.json"
LOCK_NAME = "requirements.lock"
REPORT_NAME = "report.json"
_BUILD = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]{0,80}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# An SDK's words for a body that ended before its length (botocore, urllib3, requests, azure-core).
_CUT_SHORT = re.compile(
    r"IncompleteRead|ResponseStreamingError|ContentLengthError|Connection broken|"
    r"ContentDecodingError|IncompleteDownload",
    re.IGNORECASE,
)
T = TypeVar("T")


class StoreFault(Exception):
    """A read that cannot give an environment. ``kind`` is one of the module docstring's; ``detail`` the cause."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


@dataclass(frozen=True)
class StoredFile:
    name: str  # relative to the key's folder: "<build>/venv.tar.zst"
    sha256: str
    bytes: int


@dataclass(frozen=True)
class Manifest:
    key: str
    build: str
    archive: StoredFile
    lock: StoredFile
    report: StoredFile
    backend: str  # the backend the lock step chose
    reason: str  # why (report.json's backend.reason)
    slim: bool  # final: a slim build whose model needed full mlflow says False
    verified: tuple[str, ...]  # digests of the models that loaded in this environment when it was built
    venv_bytes: int = 0
    created: str = ""
    version: str = ""  # mlflow-kserve's

    def to_json(self, key: StoreKey) -> str:
        files = {name: vars(item) for name, item in (("archive", self.archive), ("lock", self.lock),
                                                     ("report", self.report))}  # fmt: skip
        payload = {
            "format": FORMAT, "key": self.key, "build": self.build, **files, "archive_format": FORMAT_NOTES,
            "backend": {"name": self.backend, "reason": self.reason}, "slim": self.slim,
            "verified_models": list(self.verified), "venv_bytes": self.venv_bytes, "created": self.created,
            "mlflow_kserve_version": self.version, "inputs": key.parts,
        }  # fmt: skip
        return json.dumps(payload, indent=2, sort_keys=True) + "\n"

    @classmethod
    def parse(cls, data: bytes, key: str) -> Manifest:
        """Raises StoreFault('unreadable manifest') on anything but a manifest of this format and key."""
        try:
            raw = json.loads(data)
            if raw["format"] != FORMAT or raw["key"] != key:
                raise ValueError(f"format {raw['format']!r}, key {str(raw['key'])[:12]}")
            build = str(raw["build"])
            if not _BUILD.match(build):
                raise ValueError(f"build name {build[:40]!r}")
            files = {}
            for part, name in (("archive", ARCHIVE_NAME), ("lock", LOCK_NAME), ("report", REPORT_NAME)):
                item = raw[part]
                if item["name"] != f"{build}/{name}" or not _SHA256.match(item["sha256"]):
                    raise ValueError(f"{part} entry {str(item)[:80]}")
                files[part] = StoredFile(item["name"], item["sha256"], int(item["bytes"]))
            return cls(
                key, build, files["archive"], files["lock"], files["report"], str(raw["backend"]["name"]),
                str(raw["backend"]["reason"]), bool(raw["slim"]), tuple(str(d) for d in raw["verified_models"]),
                int(raw.get("venv_bytes", 0)), str(raw.get("created", "")), str(raw.get("mlflow_kserve_version", "")),
            )  # fmt: skip
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StoreFault("unreadable manifest", f"{type(exc).__name__}: {str(exc)[:200]}") from exc


@dataclass
class Restored:
    archive_bytes: int
    seconds: dict[str, float] = field(default_factory=dict)  # download, check, unpack


@dataclass(frozen=True)
class Published:
    build: str
    archive_bytes: int
    seconds: dict[str, float]  # pack, upload


class EnvStore:
    """One store URI. The backend (and its SDK) is opened on first use."""

    def __init__(self, uri: str, bounds: Bounds = DEFAULT_BOUNDS) -> None:
        self.uri = uri
        self.bounds = bounds
        self._backend: Backend | None = None

    @property
    def location(self) -> str:
        return redact(self.uri)

    # -- reading --------------------------------------------------------------------------------------------
    def lookup(self, key: StoreKey) -> Manifest:
        """The entry's manifest; StoreFault('miss') when there is none."""
        data = self._call("manifest", lambda backend: backend.read(f"{key.digest}/{MANIFEST}"))
        if data is None:
            raise StoreFault("miss", f"no environment under key {key.short} yet")
        return Manifest.parse(data, key.digest)

    def read_lock(self, manifest: Manifest) -> str:
        data = self._call("lock", lambda backend: backend.read(f"{manifest.key}/{manifest.lock.name}"))
        if data is None:
            raise StoreFault("missing archive", f"the entry's lock {manifest.lock.name} is gone")
        _check_digest(data, manifest.lock, "lock")
        return data.decode()

    def restore(self, manifest: Manifest, dest: Path) -> Restored:
        """Download the entry's archive beside ``dest``, check its size and sha256, unpack it into the new folder
        ``dest``. On any fault ``dest`` and the download are removed and StoreFault raised."""
        archive = dest.with_name(f"{dest.name}.{ARCHIVE_NAME}")
        stats = Restored(manifest.archive.bytes)
        try:
            started = time.monotonic()
            self._call("archive", lambda backend: backend.download(f"{manifest.key}/{manifest.archive.name}", archive))
            stats.seconds["download"] = _since(started)
            size = archive.stat().st_size
            if size != manifest.archive.bytes:
                raise StoreFault("truncated", f"downloaded {size} of the archive's {manifest.archive.bytes} bytes")
            started = time.monotonic()
            digest = sha256_of(archive)
            stats.seconds["check"] = _since(started)
            if digest != manifest.archive.sha256:
                raise StoreFault(
                    "digest mismatch",
                    f"the archive's sha256 is {digest[:12]}…, its manifest says {manifest.archive.sha256[:12]}…",
                )
            started = time.monotonic()
            try:
                unpack(archive, dest)
            except OSError as exc:
                kind = "disk full" if _disk_full(exc) else "corrupt archive"
                raise StoreFault(kind, f"it does not unpack ({type(exc).__name__}: {exc})") from exc
            except UnpackError as exc:
                kind = "disk full" if "No space left" in str(exc) else "corrupt archive"
                raise StoreFault(kind, f"it does not unpack ({exc})") from exc
            stats.seconds["unpack"] = _since(started)
            return stats
        except BaseException:
            discard(dest)
            raise
        finally:
            discard(archive)

    # -- writing --------------------------------------------------------------------------------------------
    def publish(
        self, key: StoreKey, venv: Path, scratch: Path, *, lock_text: str, report: dict[str, Any], backend: str,
        reason: str, slim: bool, verified: tuple[str, ...], venv_bytes: int,
    ) -> Published:  # fmt: skip
        """Write a new build of ``key``: archive, lock and report, then the manifest naming them. ``scratch`` is a
        folder for the archive while it uploads (removed after). Raises StoreFault('unreachable'/'denied'/...)."""
        build = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:8]
        scratch.mkdir(parents=True, exist_ok=True)
        archive = scratch / ARCHIVE_NAME
        seconds: dict[str, float] = {}
        try:
            started = time.monotonic()
            packed = pack(venv, archive)
            seconds["pack"] = _since(started)
            lock_bytes = lock_text.encode()
            report_bytes = (json.dumps(report, indent=2) + "\n").encode()
            manifest = Manifest(
                key.digest, build, StoredFile(f"{build}/{ARCHIVE_NAME}", packed.sha256, packed.bytes),
                _stored(f"{build}/{LOCK_NAME}", lock_bytes), _stored(f"{build}/{REPORT_NAME}", report_bytes),
                backend, reason, slim, verified, venv_bytes, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                __version__,
            )  # fmt: skip
            started = time.monotonic()
            prefix = f"{key.digest}/"
            self._call("archive", lambda b: b.upload(archive, prefix + manifest.archive.name), writing=True)
            self._call("lock", lambda b: b.write(prefix + manifest.lock.name, lock_bytes), writing=True)
            self._call("report", lambda b: b.write(prefix + manifest.report.name, report_bytes), writing=True)
            manifest_bytes = manifest.to_json(key).encode()
            self._call("manifest", lambda b: b.write(prefix + MANIFEST, manifest_bytes), writing=True)  # last
            seconds["upload"] = _since(started)
        finally:
            discard(scratch)
        return Published(build, packed.bytes, seconds)

    # -- internals ------------------------------------------------------------------------------------------
    def _call(self, what: str, action: Callable[[Backend], T], *, writing: bool = False) -> T:
        """Run ``action`` on the backend; an SDK's exception becomes a StoreFault naming its kind."""
        from mlflow_kserve.fetch import classify

        try:
            if self._backend is None:
                self._backend = open_backend(self.uri, self.bounds)
            return action(self._backend)
        except StoreFault:
            raise
        except Exception as exc:
            kind = classify(exc)
            cause = redact(" ".join(f"{type(exc).__name__}: {exc}".split()))[:300]
            if isinstance(exc, ModuleNotFoundError):
                raise StoreFault("client missing", f"{cause}; the init image has every store client") from exc
            if _CUT_SHORT.search(_chain(exc)):  # the connection ended before the object did
                raise StoreFault("truncated", f"{what}: {cause}") from exc
            if kind == "not-found":
                missing = "not found" if writing else ("miss" if what == "manifest" else "missing archive")
                raise StoreFault(missing, f"{what}: {cause}") from exc
            if kind == "denied":
                raise StoreFault("denied", f"{what}: {cause}") from exc
            if kind == "disk-full":
                raise StoreFault("disk full", f"{what}: {cause}") from exc
            raise StoreFault("unreachable", f"{what}: {cause}") from exc


def _chain(exc: BaseException) -> str:
    """The text of ``exc`` and of what caused it (s3transfer keeps the cause of its last retry apart)."""
    parts: list[str] = []
    seen: BaseException | None = exc
    while seen is not None and len(parts) < 8:
        parts.append(f"{type(seen).__name__}: {seen}")
        seen = seen.__cause__ or seen.__context__ or getattr(seen, "last_exception", None)
    return " | ".join(parts)


def _stored(name: str, data: bytes) -> StoredFile:
    return StoredFile(name, hashlib.sha256(data).hexdigest(), len(data))


def _check_digest(data: bytes, expected: StoredFile, what: str) -> None:
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected.sha256:
        raise StoreFault(
            "digest mismatch", f"the {what}'s sha256 is {digest[:12]}…, its manifest says {expected.sha256[:12]}…"
        )


def _disk_full(exc: OSError) -> bool:
    return exc.errno in (errno.ENOSPC, errno.EDQUOT)


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)
