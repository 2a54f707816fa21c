"""The fetch step against real stores: the moto S3 server, the MLflow registry, local paths, and a real HTTP
server that denies access."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow_kserve.errors import FetchError
from mlflow_kserve.fetch import fetch_model
from support.models import BuiltModel
from support.services import S3, Registry


@pytest.fixture
def store_env(s3: S3, registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {**s3.env, **registry.env}.items():
        monkeypatch.setenv(key, value)


def _same_files(a: Path, b: Path) -> bool:
    names = lambda root: sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())  # noqa: E731
    return names(a) == names(b)


@pytest.mark.parametrize("suffix", ["/", ""], ids=["trailing-slash", "no-trailing-slash"])
def test_s3_prefix_lands_with_mlmodel_on_top(
    suffix: str, s3_models: dict[str, str], models: dict[str, BuiltModel], store_env: None, tmp_path: Path
) -> None:
    result = fetch_model(s3_models["sklearn-columns"] + suffix, tmp_path / "model")
    assert (tmp_path / "model" / "MLmodel").is_file()
    assert _same_files(tmp_path / "model", models["sklearn-columns"].path)
    assert result.files >= 5 and result.bytes > 0


def test_registry_version_alias_and_run_uris(
    registry_models: dict[str, str], registry: Registry, store_env: None, tmp_path: Path
) -> None:
    version = MlflowClient(registry.tracking_uri).get_model_version_by_alias("custom-extra-dep", "champion")
    for index, uri in enumerate(
        [
            registry_models["custom-extra-dep"],
            f"models:/custom-extra-dep/{version.version}",
            f"runs:/{version.run_id}/model",
        ]
    ):
        fetch_model(uri, tmp_path / f"m{index}")
        assert (tmp_path / f"m{index}" / "MLmodel").is_file(), uri


def test_local_path_and_file_uri(models: dict[str, BuiltModel], tmp_path: Path) -> None:
    source = models["sklearn-columns"].path
    fetch_model(str(source), tmp_path / "a")
    fetch_model(f"file://{source}", tmp_path / "b")
    assert _same_files(tmp_path / "a", source) and _same_files(tmp_path / "b", source)


def test_refetch_replaces_a_previous_model_and_stale_partials(models: dict[str, BuiltModel], tmp_path: Path) -> None:
    dest = tmp_path / "model"
    (tmp_path / ".model.fetch-crashed").mkdir()  # a fetch killed mid-way
    dest.mkdir()
    (dest / "stale.txt").write_text("from an older model")
    fetch_model(str(models["sklearn-columns"].path), dest)
    assert not (dest / "stale.txt").exists()
    assert not list(tmp_path.glob(".model.fetch-*"))


class _Deny(BaseHTTPRequestHandler):
    hits = 0

    def do_GET(self) -> None:
        type(self).hits += 1
        self.send_response(403)
        self.end_headers()
        self.wfile.write(b"Forbidden")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def denying_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Deny)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    # MLflow reads http(s) URIs as its artifact proxy API (`mlflow server --serve-artifacts`).
    yield f"http://127.0.0.1:{server.server_address[1]}/api/2.0/mlflow-artifacts/artifacts/iris?token=pa55word"
    server.shutdown()


def test_denied_is_not_retried_and_hides_credentials(denying_server: str, tmp_path: Path) -> None:
    _Deny.hits = 0
    with pytest.raises(FetchError) as info:
        fetch_model(denying_server, tmp_path / "model", retries=4)
    assert info.value.exit_code == 3
    assert "access denied" in str(info.value)
    assert "pa55word" not in str(info.value)
    assert _Deny.hits <= 3, "no retry loop on a 403 (MLflow's own client may ask twice)"
    assert not (tmp_path / "model").exists()
