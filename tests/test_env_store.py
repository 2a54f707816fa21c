"""The environment store's parts, without the network: the key (what changes it and what does not), the archive
(a round trip keeps every file, link and mtime; hostile members are refused), and entries on a local store (a
publish reads back; each fault is named and leaves nothing half-unpacked)."""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import zstandard
from mlflow_kserve.env_store import EnvStore, StoreFault, check_uri, store_key, unkeyable
from mlflow_kserve.env_store.archive import UnpackError, pack, unpack, unpack_stream
from mlflow_kserve.env_store.store import usable_cpus
from mlflow_kserve.errors import ConfigError
from mlflow_kserve.index import IndexConfig
from mlflow_kserve.interpreter import Interpreter
from mlflow_kserve.lock import LockRequest
from support.venvs import differences, listing

PY = Interpreter("/usr/local/bin/python3.11", "3.11.7", "linux-x86_64-glibc-2.36")
MODEL = ("mlflow==3.17.2", "scikit-learn==1.9.1")
MLSERVER = ("mlserver==1.7.1", "mlserver-mlflow==1.7.1", "uvloop<0.22")
NO_INDEX = IndexConfig()


def _key(
    *,
    mlserver: tuple[str, ...] = MLSERVER,
    order: tuple[str, ...] = ("mlserver", "mlflow"),
    index: IndexConfig = NO_INDEX,
    constraints: tuple[str, ...] = (),
    python: Interpreter = PY,
    **options: object,
) -> str:
    requests = {
        "mlserver": LockRequest((*MODEL, *mlserver), constraints, (), index, python.path),
        "mlflow": LockRequest(MODEL, constraints, (), index, python.path),
    }
    settings = {"requested_backend": "auto", "installer": "uv", "slim": False, **options}
    return store_key([(b, requests[b]) for b in order], interpreter=python, **settings).digest  # type: ignore[arg-type]


def test_the_key_is_the_same_for_the_same_inputs_and_ignores_the_primary_index() -> None:
    assert _key() == _key()
    # the index a pod downloads from is where, not what: a pod whose index is down finds the entry
    assert _key(index=IndexConfig("http://127.0.0.1:9/simple")) == _key()


@pytest.mark.parametrize(
    "change",
    [
        {"mlserver": (*MLSERVER, "grpcio==1.70.0")},  # a backend's pins (e.g. gRPC adds grpcio)
        {"order": ("mlflow", "mlserver")},  # auto prefers another backend
        {"order": ("mlflow",)},  # --backend mlflow
        {"constraints": ("numpy<2",)},
        {"index": IndexConfig(None, ("https://download.pytorch.org/whl/cpu",))},  # extra indexes add packages
        {"python": Interpreter(PY.path, "3.11.9", PY.platform)},
        {"python": Interpreter(PY.path, PY.version, "linux-aarch64-glibc-2.36")},
        {"python": Interpreter("/opt/python/bin/python3.11", PY.version, PY.platform)},
        {"requested_backend": "mlserver"},
        {"installer": "pip"},
        {"slim": True},
    ],
    ids=lambda change: next(iter(change)),
)
def test_every_input_of_the_resolution_changes_the_key(change: dict[str, object]) -> None:
    assert _key(**change) != _key()  # type: ignore[arg-type]


def test_a_new_field_of_the_lock_request_changes_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the lock request resolves with (e.g. a resolution date) is in the key by construction."""
    before = _key()
    original = LockRequest.cache_parts
    monkeypatch.setattr(LockRequest, "cache_parts", lambda self, v, p: {**original(self, v, p), "as_of": "2026-01-02"})
    assert _key() != before


@pytest.mark.parametrize(
    "line",
    ["/mnt/models/model/wheels/x-1.0-py3-none-any.whl", "x @ file:///mnt/models/model/x.whl",
     "x @ git+https://example.org/x.git@main", "-e /mnt/models/model/src"],
)  # fmt: skip
def test_requirements_the_key_cannot_name_keep_the_store_out(line: str) -> None:
    request = LockRequest((*MODEL, line))
    assert unkeyable([("mlflow", request)]) is not None
    assert unkeyable([("mlflow", LockRequest(MODEL))]) is None
    local_links = LockRequest(MODEL, index=IndexConfig(None, (), ("/mnt/models/model/wheels",)))
    assert unkeyable([("mlflow", local_links)]) is not None


@pytest.mark.parametrize(
    ("uri", "message"),
    [("ftp://host/envs", "no environment store backend for this scheme"), ("s3:///envs", "names no bucket"),
     ("wasbs://account.blob.core.windows.net/envs", "names no container"), ("  ", "is empty")],
)  # fmt: skip
def test_bad_store_uris_are_named(uri: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        check_uri(uri)
    assert info.value.exit_code == 2 and "fix: use s3://" in str(info.value)


def _fake_venv(root: Path) -> Path:
    venv = root / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "lib" / "python3.11" / "site-packages" / "pkg" / "__pycache__").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to("/usr/bin/python3")  # absolute, as uv links the base interpreter
    (venv / "lib64").symlink_to("lib")
    script = venv / "bin" / "tool"
    script.write_text("#!/bin/sh\necho tool\n")
    script.chmod(0o755)
    source = venv / "lib" / "python3.11" / "site-packages" / "pkg" / "__init__.py"
    source.write_text("VALUE = 1\n" * 1000)
    os.utime(source, (1_700_000_000.25, 1_700_000_000.25))
    (source.parent / "__pycache__" / "__init__.cpython-311.pyc").write_bytes(os.urandom(4096))
    os.link(source, source.parent / "same.py")
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (venv / ".lock").touch(0o666)  # uv's lock file: a mode the venv keeps
    os.chmod(venv / ".lock", 0o666)
    return venv


def test_an_archive_round_trip_keeps_every_file_link_mode_and_mtime(tmp_path: Path) -> None:
    venv = _fake_venv(tmp_path)
    (packed,), _ = pack(venv, tmp_path)  # a small venv: one part
    assert packed.files == len(listing(venv)) + 1  # and "." itself
    restored = tmp_path / "elsewhere" / "venv"
    restored.parent.mkdir()
    unpack(tmp_path / packed.name, restored)
    assert differences(listing(venv), listing(restored)) == []
    source = "lib/python3.11/site-packages/pkg/__init__.py"
    assert (restored / source).stat().st_mtime == 1_700_000_000.25, "bytecode stays valid"
    assert os.readlink(restored / "bin" / "python") == "/usr/bin/python3"
    assert os.stat(restored / source).st_ino == os.stat(restored / source.replace("__init__", "same")).st_ino


def _wide_venv(root: Path) -> Path:
    """The fake venv with 40 packages of 12 files each, and folder mtimes in the past."""
    venv = _fake_venv(root)
    site = venv / "lib" / "python3.11" / "site-packages"
    for index in range(40):
        package = site / f"pkg{index:02d}"
        (package / "sub").mkdir(parents=True)
        for name in range(12):
            (package / ("sub" if name % 2 else ".") / f"m{name}.py").write_bytes(os.urandom(2_000 + 97 * name))
        os.utime(package / "sub", (1_600_000_000, 1_600_000_000))
        os.utime(package, (1_600_000_000, 1_600_000_000))
    os.utime(site, (1_600_000_000, 1_600_000_000))
    return venv


def _folder_mtimes(root: Path) -> dict[str, float]:
    return {str(p.relative_to(root)): p.stat().st_mtime for p in [root, *root.rglob("*")] if p.is_dir()}


def test_parts_split_the_files_and_unpack_side_by_side_into_one_venv(tmp_path: Path) -> None:
    venv = _wide_venv(tmp_path)
    (tmp_path / "parts").mkdir()
    packed, folders_only = pack(venv, tmp_path / "parts", parts=3, part_min=1)
    assert [p.name for p in packed] == ["venv.0.tar.zst", "venv.1.tar.zst", "venv.2.tar.zst"]
    folders = sum(1 for e in listing(venv).values() if e[0] == "dir") + 1
    others = len(listing(venv)) + 1 - folders
    assert sum(p.files - folders for p in packed) == others, "every file in exactly one part, every folder in each"
    assert folders_only.files == folders
    assert max(p.bytes for p in packed) < 2 * min(p.bytes for p in packed), "parts of about the same size"
    dest = tmp_path / "restored"
    dest.mkdir()
    with ThreadPoolExecutor(3) as pool:  # as a restore unpacks them: at once, into one folder
        list(pool.map(lambda p: unpack_stream((tmp_path / "parts" / p.name).open("rb"), dest), packed))
    assert differences(listing(venv), listing(dest)) == []
    unpack_stream((tmp_path / "parts" / folders_only.name).open("rb"), dest)  # last: the folders alone
    assert _folder_mtimes(dest) == _folder_mtimes(venv), "every folder's mtime, set after all files"


def _hostile(tmp_path: Path, add: str) -> Path:
    plain, archive = tmp_path / "hostile.tar", tmp_path / "hostile.tar.zst"
    with tarfile.open(plain, "w") as tar:
        info = tarfile.TarInfo("./ok.txt")
        tar.addfile(info)
        if add == "dotdot":
            tar.addfile(tarfile.TarInfo("../escaped.txt"))
        elif add == "through-link":
            link = tarfile.TarInfo("./out")
            link.type, link.linkname = tarfile.SYMTYPE, str(tmp_path)
            tar.addfile(link)
            tar.addfile(tarfile.TarInfo("./out/through-link-escaped.txt"))
    archive.write_bytes(zstandard.ZstdCompressor().compress(plain.read_bytes()))
    return archive


@pytest.mark.parametrize("add", ["dotdot", "through-link"])
def test_unpack_refuses_members_that_leave_the_folder(add: str, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    with pytest.raises(UnpackError, match="tar exited"):
        unpack(_hostile(tmp_path, add), dest)
    assert not [p for p in tmp_path.rglob("*escaped*") if dest not in p.parents], "nothing written outside dest"


# -- entries on a local store --------------------------------------------------------------------------------
KEY = store_key([("mlflow", LockRequest(MODEL))], requested_backend="auto", installer="uv", slim=False, interpreter=PY)


def _publish(store_dir: Path, venv: Path, scratch: Path) -> EnvStore:
    store = EnvStore(str(store_dir))
    report = {"backend": {"name": "mlflow"}, "packages": {"mlflow": "3.17.2"}}
    store.publish(KEY, venv, scratch, lock_text="mlflow==3.17.2 --hash=sha256:00\n", report=report, backend="mlflow",
                  reason="--backend mlflow (requested)", slim=False, verified=("digest-1",), venv_bytes=1)  # fmt: skip
    return store


def test_a_published_entry_reads_back_whole(tmp_path: Path) -> None:
    venv = _fake_venv(tmp_path)
    store = _publish(tmp_path / "store", venv, tmp_path / "scratch")
    assert not (tmp_path / "scratch").exists(), "the archive is not left behind"
    manifest = store.lookup(KEY)
    assert (manifest.backend, manifest.verified, manifest.slim) == ("mlflow", ("digest-1",), False)
    assert store.read_lock(manifest) == "mlflow==3.17.2 --hash=sha256:00\n"
    dest = tmp_path / "pod" / ".venv-build-x"
    dest.parent.mkdir()
    restored = store.restore(manifest, dest)
    assert differences(listing(venv), listing(dest)) == []
    assert restored.archive_bytes == manifest.archive_bytes and set(restored.seconds) == {"download", "unpack"}
    assert [p.name for p in dest.parent.iterdir()] == [dest.name], "nothing but the venv is written"
    stored = json.loads((tmp_path / "store" / KEY.digest / "manifest.json").read_text())
    assert stored["inputs"] == KEY.parts, "the manifest says what the key was made of"


def _damaged(tmp_path: Path, damage: str) -> tuple[EnvStore, Path]:
    venv = _fake_venv(tmp_path)
    store_dir = tmp_path / "store"
    store = _publish(store_dir, venv, tmp_path / "scratch")
    entry = store_dir / KEY.digest
    manifest_file = entry / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    archive = entry / manifest["parts"][0]["name"]
    data = archive.read_bytes()
    if damage == "corrupt archive":  # bytes flipped before the digest was taken: a broken build's archive
        middle = len(data) // 2  # inside the random .pyc: a stored block, which zlib itself does not check
        broken = data[:middle] + bytes(b ^ 0xFF for b in data[middle : middle + 64]) + data[middle + 64 :]
        archive.write_bytes(broken)
        manifest["parts"][0]["sha256"] = hashlib.sha256(broken).hexdigest()
    elif damage == "digest mismatch":
        manifest["parts"][0]["sha256"] = "0" * 64
    elif damage == "truncated":
        archive.write_bytes(data[: len(data) // 2])
    elif damage == "unreadable manifest":
        manifest_file.write_text('{"format": 1, "key": "')
        return store, tmp_path
    elif damage == "missing archive":
        archive.unlink()
    manifest_file.write_text(json.dumps(manifest))
    return store, tmp_path


@pytest.mark.parametrize("damage", ["corrupt archive", "digest mismatch", "truncated", "missing archive"])
def test_a_damaged_entry_is_named_and_leaves_nothing(damage: str, tmp_path: Path) -> None:
    store, work = _damaged(tmp_path, damage)
    dest = work / "pod" / ".venv-build-x"
    dest.parent.mkdir()
    with pytest.raises(StoreFault) as info:
        store.restore(store.lookup(KEY), dest)
    assert info.value.kind == damage
    assert list(dest.parent.iterdir()) == [], "no half-unpacked venv, no download left"


def test_a_damaged_part_of_several_is_named_and_the_rest_discarded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("mlflow_kserve.env_store.archive.PART_MIN", 1)
    venv = _wide_venv(tmp_path)
    store = _publish(tmp_path / "store", venv, tmp_path / "scratch")
    manifest = store.lookup(KEY)
    assert len(manifest.parts) == 4
    whole = store.restore(manifest, tmp_path / "whole")
    assert (whole.parts, whole.workers) == (4, min(4, max(2, usable_cpus())))
    assert differences(listing(venv), listing(tmp_path / "whole")) == []
    entry = tmp_path / "store" / KEY.digest
    (entry / manifest.parts[2].name).write_bytes(b"\0" * manifest.parts[2].bytes)  # the third part: zeros
    dest = tmp_path / "pod" / ".venv-build-x"
    dest.parent.mkdir()
    with pytest.raises(StoreFault) as info:
        store.restore(manifest, dest)
    assert info.value.kind == "digest mismatch" and "venv.2.tar.zst" in info.value.detail, info.value
    assert list(dest.parent.iterdir()) == [], "no half-unpacked venv"


def test_a_missing_or_unreadable_manifest_is_a_miss_or_named(tmp_path: Path) -> None:
    with pytest.raises(StoreFault) as info:
        EnvStore(str(tmp_path / "empty")).lookup(KEY)
    assert info.value.kind == "miss" and KEY.short in info.value.detail
    store, _ = _damaged(tmp_path, "unreadable manifest")
    with pytest.raises(StoreFault) as info:
        store.lookup(KEY)
    assert info.value.kind == "unreadable manifest"
