"""The environment store with real inits, against a real S3 server (moto) on localhost.

Pod A (init, the session's shared cache: its build is shared with the other tests) builds and publishes; pod B,
with fresh directories and an index that answers nothing, serves from the store: no request reaches the index,
and the two venvs are identical file for file (a digest listing). Then A's entry is damaged four ways (a
corrupted archive, a manifest whose digest does not match, a truncated archive, a store that is down): each init
says which in one line and builds as without a store. A local cache that has the environment answers before the
store's archive is ever downloaded, so the damaged-archive pods get a cache seeded with the shared cache's
resolutions and uv downloads but no environment: their build asks nothing of the index and copies nothing over
the network, yet installs and verifies. The other backends: a publish and a hit against gcp-storage-emulator and
Azurite.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow_kserve.env_store import EnvStore, StoreFault, StoreKey, store_key
from mlflow_kserve.interpreter import probe
from mlflow_kserve.lock import LockRequest
from support.cli import mlflow_kserve, report, served, v2_request
from support.emulators import GCS, Azure, dead_endpoint
from support.models import BuiltModel
from support.services import S3, failing_proxy, free_port
from support.venvs import differences, listing

pytestmark = pytest.mark.timeout(900)
MODEL = "sklearn-columns"
INDEX_VARS = ("UV_INDEX_URL", "UV_DEFAULT_INDEX", "PIP_INDEX_URL")


@dataclass(frozen=True)
class Published:
    uri: str  # the store
    key: str
    pod: Path  # pod A's folder (env/, models/)
    entry: Path  # a local copy of the entry's files (<key>/manifest.json, <key>/<build>/...)
    env: dict[str, str]


def _init(pod: Path, model: BuiltModel, env: dict[str, str], *extra: str) -> tuple[dict, str]:
    args = ["init", "--model-uri", str(model.path), "--name", "iris", "--models-dir", str(pod / "models"),
            "--env-dir", str(pod / "env"), *extra]  # fmt: skip
    done = mlflow_kserve(args, env)
    assert done.returncode == 0, done.stderr[-3000:]
    return report(pod / "env"), done.stderr


@pytest.fixture(scope="module")
def published(
    s3: S3, models: dict[str, BuiltModel], shared_cache: Path, tmp_path_factory: pytest.TempPathFactory
) -> Published:
    """Pod A: init with the shared cache, publishing to a fresh prefix of the moto bucket."""
    env = {**os.environ, **s3.env}
    uri = f"s3://{s3.bucket}/envs-{uuid.uuid4().hex[:8]}"
    pod = tmp_path_factory.mktemp("pod-a")
    facts, log = _init(pod, models[MODEL], env, "--cache-dir", str(shared_cache), "--env-store", uri,
                       "--env-store-publish")  # fmt: skip
    store = facts["store"]
    assert facts["environment"]["source"] in ("built", "local cache")
    assert store["lookup"] == "miss" and store["published"], store
    assert "published the environment to the env store" in log
    entry = tmp_path_factory.mktemp("entry")
    client, prefix = s3.client(), uri.split("/", 3)[3]
    for item in client.list_objects_v2(Bucket=s3.bucket, Prefix=prefix)["Contents"]:
        target = entry / item["Key"][len(prefix) + 1 :]
        target.parent.mkdir(parents=True, exist_ok=True)
        client.download_file(s3.bucket, item["Key"], str(target))
    return Published(uri, store["key"], pod, entry, env)


@pytest.mark.e2e
def test_pod_b_serves_from_the_store_without_the_index(
    published: Published, models: dict[str, BuiltModel], tmp_path: Path
) -> None:
    model = models[MODEL]
    with dead_endpoint() as index:
        env = {**published.env, **{name: f"{index.url}/simple" for name in INDEX_VARS}}
        env["PYTHONDONTWRITEBYTECODE"] = "1"  # the server writes no bytecode into the venv, as in a pod (read-only)
        args = ["--model-uri", str(model.path), "--work-dir", str(tmp_path / "work"), "--env-store", published.uri,
                "--index-url", f"{index.url}/simple"]  # fmt: skip
        with served(args, env, free_port(), "iris", tmp_path / "run.log") as server:
            answer = server.infer(v2_request(model.expected))
        assert index.requests == [], "no request reached the package index"
    assert answer["outputs"][0]["data"] == pytest.approx(model.expected["output"])
    facts = report(next((tmp_path / "work" / "models").glob("*/env")))
    assert facts["environment"]["source"] == "store"
    assert facts["store"]["lookup"] == "hit" and facts["store"]["key"] == published.key
    assert facts["store"]["archive_bytes"] > 0 and {"download", "unpack"} <= set(facts["store"]["seconds"])
    assert facts["store"]["parts"] == 4, "the iris venv (over 100 MB) is cut into the most parts"
    assert "environment from the env store" in server.output()
    assert "environment from the env store" in next(ln for ln in server.output().splitlines() if "ready:" in ln)
    venv_a, venv_b = published.pod / "env" / "venv", Path(facts["venv"])
    assert venv_a.resolve() != venv_b.resolve()
    assert differences(listing(venv_a), listing(venv_b)) == [], "pod B's venv is pod A's, file for file"


def _damaged_store(published: Published, tmp_path: Path, damage: str) -> str:
    """A file:// store holding A's entry (files hard-linked, one copied when it is damaged), damaged."""
    store = tmp_path / "store"
    shutil.copytree(published.entry, store, copy_function=os.link)
    manifest_file = store / published.key / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    archive = store / published.key / manifest["parts"][-1]["name"]  # the last of the venv's parts
    if damage == "corrupt archive":  # bytes flipped in the middle, digest taken after: a broken build's archive
        data = bytearray(archive.read_bytes())
        middle = len(data) // 2
        data[middle : middle + 4096] = bytes(b ^ 0xFF for b in data[middle : middle + 4096])
        archive.unlink()
        archive.write_bytes(data)
        manifest["parts"][-1]["sha256"] = hashlib.sha256(data).hexdigest()
    elif damage == "digest mismatch":
        manifest["parts"][-1]["sha256"] = hashlib.sha256(b"another archive").hexdigest()
    elif damage == "truncated":
        size = archive.stat().st_size
        with archive.open("rb") as fh:
            head = fh.read(size // 3)
        archive.unlink()
        archive.write_bytes(head)
    manifest_file.unlink()
    manifest_file.write_text(json.dumps(manifest))
    return f"file://{store}"


def _one_store_line(log: str) -> str:
    lines = [ln for ln in log.splitlines() if "env store" in ln]
    assert len(lines) == 1, lines
    return lines[0]


def _seeded_cache(shared_cache: Path, dest: Path) -> Path:
    """A cache with the shared cache's resolutions (copied) and uv downloads, and no environment. The test session
    gives every uv one download cache (UV_CACHE_DIR, tests/conftest.py), which the build uses as an operator's;
    without it, the product keeps uv's downloads inside the cache dir: hard-linked here."""
    dest.mkdir()
    shutil.copytree(shared_cache / "locks", dest / "locks")
    if "UV_CACHE_DIR" not in os.environ:
        subprocess.run(["cp", "-al", str(shared_cache / "uv"), str(dest / "uv")], check=True)
    return dest


@pytest.mark.e2e
@pytest.mark.parametrize("damage", ["corrupt archive", "digest mismatch", "truncated"])
def test_a_damaged_entry_falls_back_to_building_in_one_line(
    damage: str, published: Published, models: dict[str, BuiltModel], shared_cache: Path, tmp_path: Path
) -> None:
    uri = _damaged_store(published, tmp_path, damage)
    pod, cache = tmp_path / "pod", _seeded_cache(shared_cache, tmp_path / "cache")
    facts, log = _init(pod, models[MODEL], published.env, "--cache-dir", str(cache), "--env-store", uri)
    line = _one_store_line(log)
    assert f": {damage} (" in line and "building the environment instead" in line, line
    assert facts["store"]["lookup"] == damage and facts["environment"]["source"] == "built"
    assert facts["cache"]["lock_hit"] is True, "the build resolved nothing: the index was not needed"
    assert (pod / "env" / "venv" / "pyvenv.cfg").is_file()
    leftovers = [p.name for p in (pod / "env").iterdir() if p.name.startswith((".venv", ".store"))]
    assert leftovers == [], "nothing half-unpacked is left"
    assert not list((cache / "tmp").iterdir()), "nor in the cache"


@pytest.mark.e2e
def test_a_store_that_is_down_falls_back_to_building_in_one_line(
    published: Published, models: dict[str, BuiltModel], shared_cache: Path, tmp_path: Path
) -> None:
    with dead_endpoint() as store:
        env = {**published.env, "MLFLOW_S3_ENDPOINT_URL": store.url, "AWS_ENDPOINT_URL_S3": store.url}
        facts, log = _init(tmp_path / "pod", models[MODEL], env, "--cache-dir", str(shared_cache), "--env-store",
                           published.uri)  # fmt: skip
    line = _one_store_line(log)
    assert ": unreachable (manifest:" in line and "building the environment instead" in line, line
    assert facts["store"]["lookup"] == "unreachable" and facts["environment"]["source"] == "local cache"
    assert store.count("GET") == 3, "the manifest's read is bounded: three attempts, then the build"


# -- the other backends: publish and hit, at the store's level ---------------------------------------------------
def _round_trip(uri: str, tmp_path: Path) -> StoreKey:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)  # parents: tmp_path may be a folder of the test's own tmp_path
    (venv / "bin" / "python").symlink_to("/usr/bin/python3")
    (venv / "lib.py").write_bytes(os.urandom(300_000))
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
    key = store_key([("mlflow", LockRequest(("mlflow==3.17.2",)))], requested_backend="auto", installer="uv",
                    slim=False, interpreter=probe(sys.executable))  # fmt: skip
    store = EnvStore(uri)
    store.publish(key, venv, tmp_path / "scratch", lock_text="mlflow==3.17.2\n", report={"ok": True},
                  backend="mlflow", reason="test", slim=False, verified=(), venv_bytes=300_000)  # fmt: skip
    reader = EnvStore(uri)  # another pod: a new client
    manifest = reader.lookup(key)
    assert reader.read_lock(manifest) == "mlflow==3.17.2\n"
    reader.restore(manifest, tmp_path / "restored")
    assert differences(listing(venv), listing(tmp_path / "restored")) == []
    return key


def _s3_entry(s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, StoreKey]:
    """A store under a new prefix of the S3 server, its client env set, holding one published entry (the small
    venv of ``_round_trip``, made in ``tmp_path``): the URI and the entry's key."""
    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)
    uri = f"s3://{s3.bucket}/envs-{uuid.uuid4().hex[:8]}/"
    return uri, _round_trip(uri, tmp_path)


def test_s3_publish_and_hit(s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _s3_entry(s3, tmp_path, monkeypatch)


def test_a_download_cut_short_is_named_truncated(s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through a proxy that sends half of every large body (its full length announced), then hangs up."""
    uri, key = _s3_entry(s3, tmp_path / "publish", monkeypatch)
    with failing_proxy(s3.endpoint, fail_first=0, truncate_over=64_000) as proxy:
        monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", proxy.url)
        reader = EnvStore(uri)
        manifest = reader.lookup(key)  # small: passes whole
        with pytest.raises(StoreFault) as info:
            reader.restore(manifest, tmp_path / "venv")
    assert info.value.kind == "truncated", info.value
    assert proxy.count("GET") == 1 + 3, "the manifest, then the archive's three bounded attempts"
    assert not (tmp_path / "venv").exists() and not list(tmp_path.glob("venv.*")), "nothing half-written is left"


def test_a_body_that_breaks_off_resumes_where_it_stopped(
    s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through a proxy that cuts a body over 200 kB in half: the archive (300 kB) breaks off once, the ranged
    read of the rest (150 kB) passes, and the venv is whole."""
    uri, key = _s3_entry(s3, tmp_path / "publish", monkeypatch)
    with failing_proxy(s3.endpoint, fail_first=0, truncate_over=200_000) as proxy:
        monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", proxy.url)
        reader = EnvStore(uri)
        reader.restore(reader.lookup(key), tmp_path / "venv")
    assert differences(listing(tmp_path / "publish" / "venv"), listing(tmp_path / "venv")) == []
    ranged = [r for r in proxy.requests if r.startswith("GET") and "venv.0.tar.zst" in r]
    assert len(ranged) == 2, f"one cut short, one ranged read of the rest (a whole one is cut again): {proxy.requests}"


@pytest.mark.e2e
def test_gs_publish_and_hit(gcs: GCS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in gcs.env.items():
        monkeypatch.setenv(name, value)
    _round_trip(f"gs://models/envs-{uuid.uuid4().hex[:8]}", tmp_path)


@pytest.mark.e2e
def test_wasbs_publish_and_hit(azure: Azure, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from azure.storage.blob import BlobServiceClient

    for name, value in azure.env.items():
        monkeypatch.setenv(name, value)
    container = BlobServiceClient.from_connection_string(azure.connection_string()).get_container_client("models")
    if not container.exists():  # the operator's bucket: the store writes into it, never creates it
        container.create_container()
    _round_trip(azure.uri("models", f"envs-{uuid.uuid4().hex[:8]}"), tmp_path)
