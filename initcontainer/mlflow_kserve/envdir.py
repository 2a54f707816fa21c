"""The env dir (--env-dir) belongs to one init at a time, and each run builds in folders of its own.

- ``claim``: an exclusive, non-blocking ``flock`` on ``<env-dir>/.mlflow-kserve.lock`` for the run's life. A
  second init, check or run on the same dir exits 2 at once, naming the holder's pid, before it touches
  anything: one wins cleanly, never two writers in one venv. The lock goes with the process (a SIGKILL
  releases it) and its children do not inherit it.
- ``build_dir`` / ``scratch_dir``: this run's venv build and installer scratch cache, named with a token of
  this process. A killed run's folders are never reused (its installer, orphaned by a SIGKILL of the CLI
  alone, may still be writing into them): ``clear_leftovers`` removes them best-effort, and whatever an
  orphan writes afterwards is removed by the next run.
"""

from __future__ import annotations

import fcntl
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mlflow_kserve.errors import ConfigError
from mlflow_kserve.files import discard
from mlflow_kserve.logs import get_logger

RUN = uuid.uuid4().hex[:8]  # one process, one run
LOCK_NAME = ".mlflow-kserve.lock"
# Leftovers of earlier runs: builds (and archives from the env store), scratch caches, restores from the cache,
# venvs moved aside, archives being published.
_LEFTOVERS = (".venv-build*", ".tool-cache*", ".venv.restore-*", ".venv.stale-*", ".store-*")


@contextmanager
def claim(env_dir: Path) -> Iterator[None]:
    """Hold ``env_dir`` for this process; ConfigError (exit 2) when another process holds it."""
    try:
        env_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(env_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise ConfigError(
            f"cannot use --env-dir {env_dir} ({exc.strerror})", "point --env-dir (MLFLOW_KSERVE_ENV_DIR) at a writable"
        ) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise ConfigError(
                f"another mlflow-kserve (pid {holder}) is using --env-dir {env_dir}",
                "wait for it to finish, or give each init its own --env-dir (each `run` its own --work-dir)",
            ) from None
        except OSError as exc:  # a filesystem without flock: nothing to guard with
            get_logger().warning("cannot lock --env-dir %s (%s); not guarded against a second init", env_dir, exc)
        else:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def build_dir(env_dir: Path) -> Path:
    """Where this run builds the venv before renaming it into place."""
    return env_dir / f".venv-build-{RUN}"


def scratch_dir(env_dir: Path) -> Path:
    """This run's installer download cache when there is no --cache-dir (beside the venv: uv hard-links)."""
    return env_dir / f".tool-cache-{RUN}"


def clear_leftovers(env_dir: Path, venv_dir: Path) -> None:
    """Remove the venv (moved aside first: gone at once, even if deleting it fails) and earlier runs'
    folders, best-effort: an orphaned installer writing into one must not fail this run."""
    if venv_dir.is_symlink():
        venv_dir.unlink()
    elif venv_dir.exists():
        os.replace(venv_dir, env_dir / f".venv.stale-{RUN}")
    for pattern in _LEFTOVERS:
        for leftover in env_dir.glob(pattern):
            discard(leftover)
