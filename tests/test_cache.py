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
from mlflow_kserve.cache import EnvCache, clone_tree, serving
from mlflow_kserve.errors import InstallError
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


@pytest.mark.network
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


@pytest.mark.network
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


@pytest.mark.network
def test_eviction_is_least_recently_used_first(tmp_path: Path, lock_file: Path) -> None:
    cache = EnvCache(tmp_path / "cache")
    for key in ("a", "b", "c"):
        (tmp_path / key).mkdir()
        cache.provide_env(key, tmp_path / key / "venv", lambda p: _build(lock_file, tmp_path / "log", p))
    for key, age in (("a", 3000), ("b", 4000), ("c", 2000)):  # last used: b, then a, then c
        os.utime(tmp_path / "cache" / "envs" / key / "entry.json", (time.time() - age, time.time() - age))
    sizes = {key: size for key, size, _ in cache.entries()}
    assert [key for key, _, _ in cache.entries()] == ["b", "a", "c"]
    cache.max_bytes = sizes["a"] + sizes["c"] + 1
    assert cache.evict() == ["b"]
    cache.max_bytes = sizes["a"] + 1
    assert cache.evict(keep="a") == ["c"], "the entry just built is kept, even when it is the oldest"
    assert [key for key, _, _ in cache.entries()] == ["a"]


def test_lock_memo_and_keys(tmp_path: Path) -> None:
    cache = EnvCache(tmp_path)
    key = cache.input_key({"requirements": ["a==1"], "python": "3.11.7"})
    assert key == cache.input_key({"python": "3.11.7", "requirements": ["a==1"]})
    assert cache.get_lock(key) is None
    cache.put_lock(key, "a==1 --hash=sha256:00\n")
    assert cache.get_lock(key) == "a==1 --hash=sha256:00\n"
    assert cache.env_key("x", "3.11.7", "linux", "mlserver") != cache.env_key("x", "3.12.1", "linux", "mlserver")
    assert cache.env_key("x", "3.11.7", "linux", "mlserver") != cache.env_key("x", "3.11.7", "linux", "mlflow")
    assert cache.get_conflict(key) is None
    cache.put_conflict(key, {"detail": "Because a==1 depends on b<1 ...", "installer": "uv"})
    assert cache.get_conflict(key) == {"detail": "Because a==1 depends on b<1 ...", "installer": "uv"}


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


def _hold_shared_lock(path: Path) -> subprocess.Popen[bytes]:
    """What server-image/entrypoint.sh does while MLServer runs: `flock -s` on the entry's in-use file."""
    holder = subprocess.Popen(["sh", "-c", f'exec 9<"{path}"; flock -s 9; echo locked; exec sleep 120'],
                              stdout=subprocess.PIPE)  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline() == b"locked\n"
    return holder


@pytest.mark.network
def test_serve_from_cache_links_and_eviction_spares_entries_in_use(tmp_path: Path, lock_file: Path) -> None:
    cache = EnvCache(tmp_path / "cache", serve_from_cache=True)
    for key in ("a", "b", "c"):
        (tmp_path / key).mkdir()
        built = cache.provide_env(key, tmp_path / key / "venv", lambda p: _build(lock_file, tmp_path / "log", p))
        assert built is False
    link = tmp_path / "a" / "venv"
    assert link.is_symlink() and link.resolve() == (tmp_path / "cache" / "envs" / "a" / "venv").resolve()
    assert _imports_six(link), "the relocatable venv runs from the cache entry"
    assert cache.provide_env("a", link, lambda p: pytest.fail("a hit builds nothing")) is True
    assert link.is_symlink(), "a restore replaces the link it finds"

    sizes = {key: size for key, size, _ in cache.entries()}
    for key in ("a", "b"):  # used long ago; c was restored just now (init exited, server not up yet)
        os.utime(tmp_path / "cache" / "envs" / key / "entry.json", (time.time() - 3600, time.time() - 3600))
    cache.max_bytes = sizes["c"]
    holder = _hold_shared_lock(tmp_path / "cache" / "envs" / "a" / "in-use")
    try:
        assert cache.evict() == ["b"], "a is locked by a running server, c is within the grace period"
        assert _imports_six(link)
    finally:
        holder.kill()
        holder.wait()
    assert cache.evict() == ["a"], "once its server is gone, a goes; c still within the grace period"
    assert not link.exists() and link.is_symlink(), "the pod that used it would have to be restarted"
    assert [key for key, _, _ in cache.entries()] == ["c"]


@pytest.mark.network
def test_serving_holds_the_entry_in_use_like_the_server_image(tmp_path: Path, lock_file: Path) -> None:
    """`mlflow-kserve run` serves from the cache inside serving(): eviction must skip the entry meanwhile."""
    cache = EnvCache(tmp_path / "cache", serve_from_cache=True)
    for key in ("a", "b"):
        (tmp_path / key).mkdir()
        cache.provide_env(key, tmp_path / key / "venv", lambda p: _build(lock_file, tmp_path / "log", p))
        os.utime(tmp_path / "cache" / "envs" / key / "entry.json", (time.time() - 3600, time.time() - 3600))
    cache.max_bytes = 1
    with serving(tmp_path / "a" / "venv"):
        assert cache.evict() == ["b"], "a is held by its server; b is not"
        assert _imports_six(tmp_path / "a" / "venv")
    with pytest.raises(InstallError, match="was evicted before the server started"), serving(tmp_path / "b" / "venv"):
        pytest.fail("a server must not start from an evicted entry")
    assert cache.evict() == ["a"], "released when serving ends"


@pytest.mark.network
def test_serving_a_copied_venv_locks_nothing(tmp_path: Path, lock_file: Path) -> None:
    cache = EnvCache(tmp_path / "cache")
    cache.provide_env("k", tmp_path / "venv", lambda p: _build(lock_file, tmp_path / "log", p))
    os.utime(tmp_path / "cache" / "envs" / "k" / "entry.json", (time.time() - 3600, time.time() - 3600))
    cache.max_bytes = 1
    with serving(tmp_path / "venv"):
        assert cache.evict() == ["k"], "the copy does not need the entry"
        assert _imports_six(tmp_path / "venv")


@pytest.mark.network
def test_restore_replaces_a_venv_left_by_an_earlier_attempt(tmp_path: Path, lock_file: Path) -> None:
    (tmp_path / "pod" / "venv" / "junk").mkdir(parents=True)  # e.g. a copy, before the slim fallback re-locked
    cache = EnvCache(tmp_path / "cache", serve_from_cache=True)
    cache.provide_env("k", tmp_path / "pod" / "venv", lambda p: _build(lock_file, tmp_path / "log", p))
    assert (tmp_path / "pod" / "venv").is_symlink() and _imports_six(tmp_path / "pod" / "venv")
    cache.serve_from_cache = False
    cache.provide_env("k", tmp_path / "pod" / "venv", lambda p: pytest.fail("a hit builds nothing"))
    assert not (tmp_path / "pod" / "venv").is_symlink() and _imports_six(tmp_path / "pod" / "venv")


@pytest.mark.network
def test_over_the_limit_the_download_cache_goes_but_entries_keep_their_files(
    tmp_path: Path, lock_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("UV_CACHE_DIR", raising=False)  # the product's own layout: uv's cache inside the cache dir
    root = tmp_path / "cache"
    cache = EnvCache(root)
    installer = UvInstaller(cache.uv_cache_dir)  # as init builds: uv hard-links from uv/ into the entry

    def build(path: Path) -> None:
        with cache.using_tools():
            installer.create_venv(path, sys.executable)
            installer.install(path, lock_file, IndexConfig())

    (tmp_path / "pod").mkdir()
    cache.provide_env("k", tmp_path / "pod" / "venv", build)
    six = next((root / "envs" / "k" / "venv").rglob("six.py"))
    assert six.stat().st_nlink == 3, "one file: uv's cache, the entry, the pod's venv (restored by cp -al)"
    cache.max_bytes = 1  # everything is over; the entry itself was just built (grace period) and stays
    holder = subprocess.Popen([sys.executable, "-c", f"""
import sys
from pathlib import Path
from mlflow_kserve.cache import EnvCache
with EnvCache(Path({str(root)!r})).using_tools():
    print("using", flush=True)
    sys.stdin.readline()
"""], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "using\n"
        assert cache.evict() == []
        assert (root / "uv").is_dir(), "a build is using the download cache: it stays"
    finally:
        holder.communicate("done\n", timeout=30)
    assert cache.evict() == []
    assert not (root / "uv").exists(), "no build running: the download cache goes"
    assert six.stat().st_nlink == 2 and _imports_six(tmp_path / "pod" / "venv")
