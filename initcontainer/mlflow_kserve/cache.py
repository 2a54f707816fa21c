"""The shared environment cache on ``--cache-dir`` (a PVC or hostPath that replicas share).

Layout::

    <root>/locks/<input-key>.txt     resolution memo: a warm start resolves nothing (input key: the requirement
                                     set, constraints, index, Python, platform, the backend, and the resolution's
                                     mode and date or lock digest; a resolution as of now is never memoised)
    <root>/locks/<input-key>.conflict.json  a resolution that failed: auto falls back at once on a warm start
    <root>/envs/<env-key>/venv       complete venvs, keyed by the lock, Python version, platform and backend
    <root>/envs/<env-key>/entry.json size and build time; its mtime is the last use (LRU)
    <root>/envs/<env-key>/verified/  model digests that loaded in this venv (a hit skips verify for them)
    <root>/envs/<env-key>/in-use     running servers hold a shared flock on it; eviction skips such entries
    <root>/tmp/                      builds in progress; renamed into envs/ only when complete
    <root>/uv, <root>/pip            the installers' download caches (uv hard-links venv files from uv/:
                                     builds happen in tmp/ on the same volume, so nothing is stored twice)
    <root>/.locks/                   file locks (one per key): many replicas build an entry once

Restore method, chosen by measurement (783 MB / 19,700-file iris venv): on the host, hard links (`cp -al`)
took 0.3 s, `cp -a` 3.9–4.8 s, tar extract 3.0 s (+2.6 s to create); in a container, `cp -al` 0.7 s, `cp -a`
8.8 s, and the same walk done in Python 4.6 s (links) and 12 s (copies). A pod's cache (a PVC) and its /mnt/env
(an emptyDir) are always different mounts, where hard links fail (EXDEV) and only copying is left: 7.9 s of a
warm start in the e2e pod. Hence two modes:

- ``serve_from_cache`` (the chart's default: the server container mounts the cache read-only at the same
  path): /mnt/env/venv becomes a symlink to ``envs/<key>/venv``. Nothing is copied, on a hit or after a
  build. The venvs are relocatable, so they run from there. A running server holds a shared lock
  (``flock -s``) on ``envs/<key>/in-use`` for its whole life (server-image/entrypoint.sh), and eviction skips
  entries that are locked or were restored in the last ``RECENT_USE_GRACE`` seconds (the gap between the init
  container exiting and the server taking the lock). An entry is pulled only from under a server that is
  down (a crash loop's back-off) and unused by any init for that long; its entrypoint then says so and exits.
- otherwise: hard links (`cp -al`) when the cache and the venv share a mount (``mlflow-kserve run``), else
  `cp -a`. Both keep mtimes, so the bytecode written when the entry was built stays valid.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from mlflow_kserve.errors import InstallError
from mlflow_kserve.files import dir_bytes, remove, write_atomic
from mlflow_kserve.logs import get_logger

log = get_logger()
LOCK_TIMEOUT = 3600.0  # a replica waits this long for another one's build of the same entry
RECENT_USE_GRACE = 900.0  # an entry restored this recently is never evicted (init exited, server not yet up)
IN_USE = "in-use"


class EnvCache:
    def __init__(self, root: Path, max_bytes: int | None = None, *, serve_from_cache: bool = False) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.serve_from_cache = serve_from_cache
        for sub in ("locks", "envs", "tmp", ".locks"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    @property
    def uv_cache_dir(self) -> Path:
        return self.root / "uv"

    # -- keys -------------------------------------------------------------------------------------------
    @staticmethod
    def input_key(parts: Mapping[str, object]) -> str:
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()

    @staticmethod
    def env_key(lock_text: str, python_version: str, platform_tag: str, backend: str) -> str:
        """The backend is part of it: verify writes the bytecode of what that backend's server imports, and
        an entry records which models loaded beside that server."""
        return hashlib.sha256(f"{python_version}\0{platform_tag}\0{backend}\0{lock_text}".encode()).hexdigest()

    # -- resolution memo --------------------------------------------------------------------------------
    def get_lock(self, input_key: str) -> str | None:
        path = self.root / "locks" / f"{input_key}.txt"
        try:
            return path.read_text() or None
        except OSError:
            return None

    def put_lock(self, input_key: str, lock_text: str) -> None:
        write_atomic(self.root / "locks" / f"{input_key}.txt", lock_text)

    def get_conflict(self, input_key: str) -> dict[str, str] | None:
        try:
            return json.loads((self.root / "locks" / f"{input_key}.conflict.json").read_text())
        except (OSError, ValueError):
            return None

    def put_conflict(self, input_key: str, conflict: Mapping[str, str]) -> None:
        write_atomic(self.root / "locks" / f"{input_key}.conflict.json", json.dumps(dict(conflict)))

    # -- environments -----------------------------------------------------------------------------------
    def provide_env(self, key: str, dest: Path, build: Callable[[Path], None]) -> bool:
        """Leave a complete venv at ``dest``. True: restored from the cache; False: built (and published)."""
        entry = self.root / "envs" / key
        if self._complete(entry):
            self._restore(entry, dest)
            return True
        lock = FileLock(str(self.root / ".locks" / f"{key}.lock"), timeout=LOCK_TIMEOUT)
        try:
            with lock:
                if self._complete(entry):  # another replica built it while we waited
                    self._restore(entry, dest)
                    return True
                self._clean_tmp(key)
                work = self.root / "tmp" / f"{key}.{uuid.uuid4().hex[:8]}"
                work.mkdir(parents=True)
                try:
                    build(work / "venv")
                    size = dir_bytes(work / "venv")
                    (work / "verified").mkdir()
                    (work / IN_USE).touch()
                    write_atomic(work / "entry.json", json.dumps({"bytes": size, "built": time.time()}))
                    if entry.exists():  # an incomplete leftover
                        shutil.rmtree(entry)
                    os.rename(work, entry)  # the publish: visible only when complete
                finally:
                    shutil.rmtree(work, ignore_errors=True)
        except Timeout as exc:
            raise TimeoutError(f"waited {LOCK_TIMEOUT:.0f}s for another build of cache entry {key[:12]}") from exc
        self._restore(entry, dest)
        self.evict(keep=key)
        return False

    def mark_verified(self, key: str, model_digest: str) -> None:
        folder = self.root / "envs" / key / "verified"
        if folder.is_dir():
            (folder / model_digest).touch()

    def is_verified(self, key: str, model_digest: str) -> bool:
        return (self.root / "envs" / key / "verified" / model_digest).exists()

    def entries(self) -> list[tuple[str, int, float]]:
        """(key, bytes, last used) of complete entries, least recently used first."""
        out = []
        for entry in (self.root / "envs").iterdir():
            meta = entry / "entry.json"
            try:
                size = json.loads(meta.read_text())["bytes"]
                out.append((entry.name, int(size), meta.stat().st_mtime))
            except (OSError, ValueError, KeyError):
                continue
        return sorted(out, key=lambda item: item[2])

    @contextmanager
    def using_tools(self) -> Iterator[None]:
        """Held (shared) while uv or pip use their download caches here: trimming them waits for no one."""
        with _shared(self.root / ".locks" / "tools.lock"):
            yield

    def evict(self, keep: str | None = None) -> list[str]:
        """Remove least recently used entries until the total is within max_bytes. Entries a server runs
        from (shared lock on ``in-use``) or restored in the last RECENT_USE_GRACE seconds stay. Then, if the
        cache as a whole is still over, the installers' download caches go (see ``_trim_tool_caches``)."""
        if self.max_bytes is None:
            return []
        try:
            return self._evict_entries(keep)
        finally:
            self._trim_tool_caches()

    def _evict_entries(self, keep: str | None) -> list[str]:
        assert self.max_bytes is not None
        entries = self.entries()
        total = sum(size for _key, size, _used in entries)
        removed = []
        for key, size, _used in entries:
            if total <= self.max_bytes:
                break
            if key == keep or not self._remove_unused(key):
                continue
            total -= size
            removed.append(key)
            log.info("evicted cache entry %s (%.0f MB)", key[:12], size / 1e6)
        return removed

    def _trim_tool_caches(self) -> None:
        """Entries hard-link their files from uv's cache, so evicting one frees little while uv/ keeps every
        wheel it ever unpacked. When the cache, counting each file once, is over max_bytes, drop uv/ and pip/
        (the entries keep their files). Skipped while a build uses them; the next eviction tries again."""
        assert self.max_bytes is not None
        used = dir_bytes(self.root)
        if used <= self.max_bytes:
            return
        cleared = []
        with _exclusive(self.root / ".locks" / "tools.lock") as free:
            for name in ("uv", "pip") if free else ():
                folder = self.root / name
                if folder.exists():
                    trash = self.root / "tmp" / f"{name}.evicted-{uuid.uuid4().hex[:8]}"
                    os.rename(folder, trash)
                    shutil.rmtree(trash, ignore_errors=True)
                    cleared.append(name)
        if cleared:
            log.info("cache at %.0f MB, over its limit: cleared the download caches %s", used / 1e6, cleared)

    def _remove_unused(self, key: str) -> bool:
        entry = self.root / "envs" / key
        lock = FileLock(str(self.root / ".locks" / f"{key}.lock"), timeout=0)
        try:
            with lock, _exclusive(entry / IN_USE) as free:
                # Checked under both locks: a restore touches entry.json before it lets go of in-use.
                if not free or time.time() - (entry / "entry.json").stat().st_mtime < RECENT_USE_GRACE:
                    return False
                trash = self.root / "tmp" / f"{key}.evicted-{uuid.uuid4().hex[:8]}"
                os.rename(entry, trash)  # gone from envs/ at once, deleted after
        except (Timeout, OSError):
            return False
        shutil.rmtree(trash, ignore_errors=True)
        return True

    # -- internals --------------------------------------------------------------------------------------
    def _complete(self, entry: Path) -> bool:
        return (entry / "entry.json").is_file() and (entry / "venv" / "pyvenv.cfg").is_file()

    def _restore(self, entry: Path, dest: Path) -> None:
        """Leave ``dest`` (replaced if it exists) as a link to the entry's venv or a clone of it."""
        with _shared(entry / IN_USE):  # eviction waits until the use below is recorded
            os.utime(entry / "entry.json")  # last used, for LRU and the grace period
            tmp = dest.with_name(f".{dest.name}.restore-{uuid.uuid4().hex[:8]}")
            try:
                if self.serve_from_cache:
                    tmp.symlink_to((entry / "venv").absolute(), target_is_directory=True)
                else:
                    clone_tree(entry / "venv", tmp)
                _replace(tmp, dest)
            finally:
                remove(tmp)

    def _clean_tmp(self, key: str) -> None:
        """Leftovers of a build killed mid-way (we hold the key's lock, so no live build owns them)."""
        for stale in (self.root / "tmp").glob(f"{key}.*"):
            shutil.rmtree(stale, ignore_errors=True)


@contextmanager
def serving(venv: Path) -> Iterator[None]:
    """Held while a server runs from ``venv``: when it is a link into a cache entry (serve_from_cache), a shared
    flock on the entry's in-use file, as server-image/entrypoint.sh takes it, so no eviction removes the venv
    under the server. A copied venv needs nothing."""
    if not venv.is_symlink():
        yield
        return
    entry = venv.resolve().parent
    gone = InstallError(f"the cached environment {entry} was evicted before the server started",
                        "run again: init restores it")  # fmt: skip
    if not entry.is_dir():
        raise gone
    with _shared(entry / IN_USE):
        if not (entry / "venv" / "pyvenv.cfg").is_file():  # evicted between init and this lock
            raise gone
        yield


def clone_tree(src: Path, dst: Path) -> None:
    """Hard-link every file of ``src`` into ``dst`` (`cp -al`) when both share a filesystem, else copy it
    (`cp -a`). Both keep mtimes, so the entry's bytecode stays valid. Measured in a container on a 780 MB venv:
    `cp -al` 0.7 s, `cp -a` 8.8 s, the same walk in Python 4.6 s (links) and 12 s (copies)."""
    cp = shutil.which("cp")
    if cp is None:  # pragma: no cover - every image we build has coreutils
        shutil.copytree(src, dst, symlinks=True)
        return
    if _same_filesystem(src, dst.parent):
        linked = subprocess.run([cp, "-al", "--", str(src), str(dst)], capture_output=True, check=False)
        if linked.returncode == 0:
            return
        shutil.rmtree(dst, ignore_errors=True)  # e.g. EPERM under fs.protected_hardlinks: copy instead
    subprocess.run([cp, "-a", "--", str(src), str(dst)], check=True, capture_output=True)


def _replace(src: Path, dest: Path) -> None:
    """Rename ``src`` onto ``dest``; a venv or link left at ``dest`` by an earlier attempt goes first."""
    remove(dest)
    os.replace(src, dest)


@contextmanager
def _exclusive(path: Path) -> Iterator[bool]:
    """A non-blocking exclusive flock on ``path``: yields False while any server holds its shared lock."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # NFS locks need write access for an exclusive lock
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
        else:
            yield True
    finally:
        os.close(fd)  # closing releases the lock


@contextmanager
def _shared(path: Path) -> Iterator[None]:
    """A blocking shared flock on ``path`` (created if missing), held for the ``with`` block."""
    fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


def _same_filesystem(a: Path, b: Path) -> bool:
    return os.stat(a).st_dev == os.stat(b).st_dev


def model_digest(model_dir: Path) -> str:
    """Identifies a model's files cheaply: MLmodel's bytes plus every file's path and size."""
    digest = hashlib.sha256()
    digest.update((model_dir / "MLmodel").read_bytes())
    for folder, _dirs, files in sorted(os.walk(model_dir)):
        for name in sorted(files):
            path = os.path.join(folder, name)
            digest.update(f"{os.path.relpath(path, model_dir)}\0{os.path.getsize(path)}\n".encode())
    return digest.hexdigest()
