"""The environment cache under concurrency, crashes and eviction, with real venvs built by uv."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow_kserve.cache import EnvCache, clone_tree
from mlflow_kserve.index import IndexConfig
from mlflow_kserve.installers import UvInstaller
from mlflow_kserve.lock import LockRequest, resolve


@pytest.fixture(scope="module")
def lock_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("lock") / "requirements.lock"
    resolve(LockRequest(("six==1.16.0",)), "uv").write(path)
    return path


def _build(lock: Path, log: Path, path: Path, delay: float = 0.0) -> None:
    with log.open("a") as fh:
        fh.write(f"{os.getpid()}\n")
    installer = UvInstaller()
    installer.create_venv(path, sys.executable)
    time.sleep(delay)
    installer.install(path, lock, IndexConfig())


def _provide(root: str, lock: str, log: str, dest: str, delay: float) -> bool:
    cache = EnvCache(Path(root))
    return cache.provide_env("k1", Path(dest), lambda p: _build(Path(lock), Path(log), p, delay))


def _imports_six(venv: Path) -> bool:
    return subprocess.run([venv / "bin" / "python", "-c", "import six"], check=False).returncode == 0


def test_concurrent_replicas_build_once(tmp_path: Path, lock_file: Path) -> None:
    root, log = tmp_path / "cache", tmp_path / "builds.log"
    dests = [tmp_path / f"pod{i}" / "venv" for i in range(6)]
    for dest in dests:
        dest.parent.mkdir()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(6) as pool:
        hits = pool.starmap(_provide, [(str(root), str(lock_file), str(log), str(d), 1.0) for d in dests])
    assert sorted(hits) == [False] + [True] * 5
    assert len(log.read_text().split()) == 1, "the builder ran once"
    assert [p.name for p in (root / "envs").iterdir()] == ["k1"]
    assert not list((root / "tmp").iterdir())
    assert all(_imports_six(d) for d in dests)


def test_build_killed_midway_leaves_nothing_visible(tmp_path: Path, lock_file: Path) -> None:
    root, log = tmp_path / "cache", tmp_path / "builds.log"
    (tmp_path / "pod").mkdir()
    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(target=_provide, args=(str(root), str(lock_file), str(log), str(tmp_path / "pod/venv"), 60))
    proc.start()
    deadline = time.monotonic() + 60
    while not list((root / "tmp").glob("k1.*/venv/pyvenv.cfg")):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    assert not (root / "envs" / "k1").exists(), "a half-built entry is never published"
    assert list((root / "tmp").iterdir()), "its leftovers are still there"
    (tmp_path / "pod2").mkdir()
    assert _provide(str(root), str(lock_file), str(log), str(tmp_path / "pod2/venv"), 0) is False
    assert _imports_six(tmp_path / "pod2" / "venv")
    assert not list((root / "tmp").iterdir()), "the next build removed the leftovers"


def test_eviction_is_least_recently_used_first(tmp_path: Path, lock_file: Path) -> None:
    cache = EnvCache(tmp_path / "cache")
    for key in ("a", "b", "c"):
        (tmp_path / key).mkdir()
        cache.provide_env(key, tmp_path / key / "venv", lambda p: _build(lock_file, tmp_path / "log", p))
        time.sleep(0.05)
    sizes = {key: size for key, size, _ in cache.entries()}
    (tmp_path / "again").mkdir()
    assert cache.provide_env("a", tmp_path / "again" / "venv", lambda p: None) is True  # "a" used last now
    cache.max_bytes = sizes["a"] + sizes["c"] + 1
    assert cache.evict(keep="c") == ["b"]
    assert sorted(key for key, _, _ in cache.entries()) == ["a", "c"]


def test_lock_memo_and_keys(tmp_path: Path) -> None:
    cache = EnvCache(tmp_path)
    key = cache.input_key({"requirements": ["a==1"], "python": "3.11.7"})
    assert key == cache.input_key({"python": "3.11.7", "requirements": ["a==1"]})
    assert cache.get_lock(key) is None
    cache.put_lock(key, "a==1 --hash=sha256:00\n")
    assert cache.get_lock(key) == "a==1 --hash=sha256:00\n"
    assert cache.env_key("x", "3.11.7", "linux") != cache.env_key("x", "3.12.1", "linux")


def test_restore_across_filesystems_copies_and_keeps_mtimes(tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.fail("this test needs /dev/shm on another filesystem than the temp dir")
    src = tmp_path / "src"
    (src / "pkg").mkdir(parents=True)
    (src / "pkg" / "mod.py").write_text("x = 1\n")
    os.utime(src / "pkg" / "mod.py", (1_000_000, 1_000_000))
    (src / "link").symlink_to("pkg/mod.py")
    dest = shm / f"clone-{os.getpid()}"
    try:
        clone_tree(src, dest)
        assert (dest / "pkg" / "mod.py").stat().st_mtime == 1_000_000
        assert os.readlink(dest / "link") == "pkg/mod.py"
        assert (dest / "pkg" / "mod.py").stat().st_ino != (src / "pkg" / "mod.py").stat().st_ino
    finally:
        subprocess.run(["rm", "-rf", str(dest)], check=False)
    same = tmp_path / "same"
    clone_tree(src, same)
    assert (same / "pkg" / "mod.py").stat().st_ino == (src / "pkg" / "mod.py").stat().st_ino, "hard link"
