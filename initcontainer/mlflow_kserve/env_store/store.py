"""Reading and writing entries: one environment per key, a manifest written last.

Layout under the store URI::

    <key>/manifest.json               written last: names one build and the sha256 and size of its files
    <key>/<build>/venv.<i>.tar.zst    the venv, in parts that unpack side by side (archive.py)
    <key>/<build>/venv.folders.tar.zst  its folders' modes and mtimes, unpacked last
    <key>/<build>/requirements.lock   the lock it was installed from
    <key>/<build>/report.json         the building init's report

A build writes its own ``<build>/`` folder (a new name each time), then the manifest: a reader sees a whole
entry or none, and two pods publishing the same key at once each leave a complete entry; the last manifest
wins. Nothing is deleted: an entry replaced by a later build leaves its folder behind (a lifecycle rule on the
bucket can expire ``*/*/venv.*.tar.zst`` older than the newest).

A restore streams each part from the store into tar as it arrives (no copy of the archive on disk), hashing it on
the way; parts unpack side by side, as many at once as the pod has cores (at least two: a stream also waits on the
network). A body that breaks off resumes where it stopped (a ranged read), ``Bounds.attempts`` times in all. The
new folder is handed back only when every part's size and sha256 match the manifest; otherwise it is removed.

Every way a read can go wrong is a ``StoreFault`` whose ``kind`` the init log and report.json name: ``miss``,
``unreachable``, ``denied``, ``unreadable manifest``, ``missing archive``, ``truncated`` (an object shorter than
its manifest says, or a connection that ended before it), ``digest mismatch``, ``corrupt archive``, ``disk full``,
``client missing``. The pipeline then builds as without a store.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import re
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

from mlflow_kserve import __version__
from mlflow_kserve.env_store import archive
from mlflow_kserve.env_store.archive import CHUNK, UnpackError, part_name, unpack_stream
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
    parts: tuple[StoredFile, ...]  # the venv's archive, in parts (archive.py)
    folders: StoredFile  # the folders alone, unpacked last
    lock: StoredFile
    report: StoredFile
    backend: str  # the backend the lock step chose
    reason: str  # why (report.json's backend.reason)
    slim: bool  # final: a slim build whose model needed full mlflow says False
    verified: tuple[str, ...]  # digests of the models that loaded in this environment when it was built
    venv_bytes: int = 0
    created: str = ""
    version: str = ""  # mlflow-kserve's

    @property
    def archive_bytes(self) -> int:
        return sum(part.bytes for part in self.parts) + self.folders.bytes

    def to_json(self, key: StoreKey) -> str:
        payload = {
            "format": FORMAT, "key": self.key, "build": self.build, "parts": [vars(part) for part in self.parts],
            "folders": vars(self.folders), "lock": vars(self.lock), "report": vars(self.report),
            "archive_format": archive.FORMAT_NOTES,
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
            if not isinstance(raw["parts"], list) or not 0 < len(raw["parts"]) <= archive.PARTS:
                raise ValueError(f"parts {str(raw['parts'])[:80]}")
            names = {f"part {i}": part_name(i) for i in range(len(raw["parts"]))}
            items = {**dict(zip(names, raw["parts"], strict=True)), "folders": raw["folders"], "lock": raw["lock"],
                     "report": raw["report"]}  # fmt: skip
            files = {}
            expected = {**names, "folders": archive.FOLDERS_NAME, "lock": LOCK_NAME, "report": REPORT_NAME}
            for part, name in expected.items():
                item = items[part]
                if item["name"] != f"{build}/{name}" or not _SHA256.match(item["sha256"]) or int(item["bytes"]) < 0:
                    raise ValueError(f"{part} entry {str(item)[:80]}")
                files[part] = StoredFile(item["name"], item["sha256"], int(item["bytes"]))
            return cls(
                key, build, tuple(files[part] for part in names), files["folders"], files["lock"], files["report"],
                str(raw["backend"]["name"]),
                str(raw["backend"]["reason"]), bool(raw["slim"]), tuple(str(d) for d in raw["verified_models"]),
                int(raw.get("venv_bytes", 0)), str(raw.get("created", "")), str(raw.get("mlflow_kserve_version", "")),
            )  # fmt: skip
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StoreFault("unreadable manifest", f"{type(exc).__name__}: {str(exc)[:200]}") from exc


@dataclass
class Restored:
    archive_bytes: int
    parts: int
    workers: int  # parts unpacking at once
    # from the start of the restore: "download" until the last byte arrived, "unpack" until the last file was
    # written (the two overlap: each part unpacks as it arrives)
    seconds: dict[str, float] = field(default_factory=dict)


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
        """Stream the entry's parts into the new folder ``dest``, side by side, each checked against its size and
        sha256 in the manifest. On any fault ``dest`` is removed and StoreFault raised (the first part's to fail)."""
        workers = min(len(manifest.parts), max(2, usable_cpus()))
        stats = Restored(manifest.archive_bytes, len(manifest.parts), workers)
        started = time.monotonic()
        stop = threading.Event()  # a part failed: the others stop reading
        try:
            dest.mkdir()
            with ThreadPoolExecutor(workers, thread_name_prefix="restore") as pool:
                futures = [pool.submit(self._restore_part, manifest, part, dest, stop) for part in manifest.parts]
                faults = []
                for future in futures:
                    try:
                        future.result()
                    except BaseException as exc:
                        stop.set()
                        faults.append(exc)
            if faults:
                raise next((f for f in faults if not isinstance(f, _Stopped)), faults[0])
            last_byte = self._restore_part(manifest, manifest.folders, dest, stop)  # the folders' modes and mtimes
            stats.seconds["download"] = _since(started, last_byte)  # the folders come last: the last byte
            stats.seconds["unpack"] = _since(started)
            return stats
        except BaseException:
            discard(dest)
            raise

    def _restore_part(self, manifest: Manifest, part: StoredFile, dest: Path, stop: threading.Event) -> float:
        """Unpack one part into ``dest`` as it streams in; the time its last byte arrived."""
        name = f"{manifest.key}/{part.name}"
        body = _Body(lambda offset: self._call("archive", lambda b: b.stream(name, offset)), part, self.bounds, stop,
                     lambda exc: self._fault("archive", exc))  # fmt: skip
        try:
            try:
                unpack_stream(body, dest)
            except UnpackError as exc:
                body.finish()  # a short or foreign archive is named as such, not as what tar made of it
                kind = "disk full" if "No space left" in str(exc) else "corrupt archive"
                raise StoreFault(kind, f"{part.name} does not unpack ({exc})") from exc
            except OSError as exc:
                kind = "disk full" if _disk_full(exc) else "corrupt archive"
                raise StoreFault(kind, f"{part.name} does not unpack ({type(exc).__name__}: {exc})") from exc
            body.finish()  # whatever follows the archive's end is counted and hashed too
            return body.last_byte
        finally:
            body.close()

    # -- writing --------------------------------------------------------------------------------------------
    def publish(
        self, key: StoreKey, venv: Path, scratch: Path, *, lock_text: str, report: dict[str, Any], backend: str,
        reason: str, slim: bool, verified: tuple[str, ...], venv_bytes: int,
    ) -> Published:  # fmt: skip
        """Write a new build of ``key``: the archive's parts, lock and report, then the manifest naming them.
        ``scratch`` is a folder for the parts while they upload (removed after). Raises StoreFault('unreachable',
        'denied', ...)."""
        build = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:8]
        scratch.mkdir(parents=True, exist_ok=True)
        seconds: dict[str, float] = {}
        try:
            started = time.monotonic()
            packed, folders = archive.pack(venv, scratch)
            seconds["pack"] = _since(started)
            lock_bytes = lock_text.encode()
            report_bytes = (json.dumps(report, indent=2) + "\n").encode()
            parts = tuple(StoredFile(f"{build}/{p.name}", p.sha256, p.bytes) for p in packed)
            manifest = Manifest(
                key.digest, build, parts, StoredFile(f"{build}/{folders.name}", folders.sha256, folders.bytes),
                _stored(f"{build}/{LOCK_NAME}", lock_bytes), _stored(f"{build}/{REPORT_NAME}", report_bytes),
                backend, reason, slim, verified, venv_bytes, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                __version__,
            )  # fmt: skip
            started = time.monotonic()
            prefix = f"{key.digest}/"
            for part in [*packed, folders]:
                self._call("archive", lambda b: b.upload(scratch / part.name, f"{prefix}{build}/{part.name}"),  # noqa: B023
                           writing=True)  # fmt: skip
            self._call("lock", lambda b: b.write(prefix + manifest.lock.name, lock_bytes), writing=True)
            self._call("report", lambda b: b.write(prefix + manifest.report.name, report_bytes), writing=True)
            manifest_bytes = manifest.to_json(key).encode()
            self._call("manifest", lambda b: b.write(prefix + MANIFEST, manifest_bytes), writing=True)  # last
            seconds["upload"] = _since(started)
        finally:
            discard(scratch)
        return Published(build, manifest.archive_bytes, seconds)

    # -- internals ------------------------------------------------------------------------------------------
    def _call(self, what: str, action: Callable[[Backend], T], *, writing: bool = False) -> T:
        """Run ``action`` on the backend; an SDK's exception becomes a StoreFault naming its kind."""
        try:
            if self._backend is None:
                self._backend = open_backend(self.uri, self.bounds)
            return action(self._backend)
        except StoreFault:
            raise
        except Exception as exc:
            raise self._fault(what, exc, writing=writing) from exc

    @staticmethod
    def _fault(what: str, exc: Exception, *, writing: bool = False) -> StoreFault:
        """The StoreFault an SDK's exception amounts to."""
        from mlflow_kserve.fetch import classify

        kind = classify(exc)
        cause = redact(" ".join(f"{type(exc).__name__}: {exc}".split()))[:300]
        if isinstance(exc, ModuleNotFoundError):
            return StoreFault("client missing", f"{cause}; the init image has every store client")
        if _CUT_SHORT.search(_chain(exc)):  # the connection ended before the object did
            return StoreFault("truncated", f"{what}: {cause}")
        if kind == "not-found":
            missing = "not found" if writing else ("miss" if what == "manifest" else "missing archive")
            return StoreFault(missing, f"{what}: {cause}")
        if kind == "denied":
            return StoreFault("denied", f"{what}: {cause}")
        if kind == "disk-full":
            return StoreFault("disk full", f"{what}: {cause}")
        return StoreFault("unreachable", f"{what}: {cause}")


class _Stopped(Exception):
    """Another part failed first: this one stopped reading."""


class _Body:
    """One part's bytes as tar reads them: counted and hashed on the way, resumed with a ranged read where a body
    breaks off (``bounds.attempts`` reads in all), never read past the size its manifest gives (one byte more
    says it is longer). ``finish`` reads what is left and raises StoreFault when the size or the sha256 differ."""

    def __init__(self, open_at: Callable[[int], IO[bytes]], part: StoredFile, bounds: Bounds, stop: threading.Event,
                 fault: Callable[[Exception], StoreFault]) -> None:  # fmt: skip
        self.open_at, self.part, self.stop, self.fault = open_at, part, stop, fault
        self.attempts = bounds.attempts
        self.digest = hashlib.sha256()
        self.count = 0
        self.last_byte = 0.0
        self.stream: IO[bytes] | None = None
        self.ended = False

    def read(self, size: int = CHUNK) -> bytes:
        if self.stop.is_set():
            raise _Stopped(self.part.name)
        room = self.part.bytes + 1 - self.count
        if self.ended or room <= 0:
            return b""
        while True:
            try:
                if self.stream is None:
                    self.attempts -= 1
                    self.stream = self.open_at(self.count)
                data = self.stream.read(min(size if size > 0 else CHUNK, room))
                break
            except StoreFault:
                raise
            except Exception as exc:  # the body broke off (or timed out): resume at the byte we got to
                self.close()
                if self.attempts <= 0:
                    raise self.fault(exc) from exc
        if data:
            self.digest.update(data)
            self.count += len(data)
        else:
            self.ended = True
        self.last_byte = time.monotonic()
        return data

    def finish(self) -> None:
        while self.read(CHUNK):
            pass
        if self.count < self.part.bytes:
            raise StoreFault("truncated", f"read {self.count} of {self.part.name}'s {self.part.bytes} bytes")
        digest = self.digest.hexdigest()
        if self.count > self.part.bytes or digest != self.part.sha256:
            raise StoreFault(
                "digest mismatch",
                f"{self.part.name}'s sha256 is {digest[:12]}…, its manifest says {self.part.sha256[:12]}…",
            )

    def close(self) -> None:
        stream, self.stream = self.stream, None
        if stream is not None:
            try:
                stream.close()
            except Exception:  # a broken connection may not close cleanly; it is dropped either way
                pass


def usable_cpus() -> int:
    """The cores this process may run on: its affinity, bounded by a cgroup v2 CPU quota (a pod's CPU limit)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cpus


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


def _since(started: float, until: float | None = None) -> float:
    return round((time.monotonic() if until is None else until) - started, 3)
