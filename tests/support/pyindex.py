"""A real package index on 127.0.0.1 that the tests control: PEP 691 JSON simple API pages with PEP 700 upload
times (what uv reads for ``--exclude-newer``, and pip for ``--uploaded-prior-to``), the files beside them, and
wheels built here (pure Python, deterministic bytes) so a test can publish a newer version of a package at a
time it chooses.

    index = LocalIndex(tmp_path / "index")
    index.publish(build_wheel(tmp_path, "probe-dep", "1.0"), uploaded=datetime(2024, 1, 1, tzinfo=timezone.utc))
    with serve(index) as url:   # http://127.0.0.1:PORT/simple
        ...

Only the projects published here exist on it (404 otherwise): as ``--extra-index-url`` in front of PyPI, uv takes
these projects from it alone (its default ``first-index`` strategy) and every other one from PyPI.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from packaging.utils import canonicalize_name

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
_EPOCH = (1980, 1, 1, 0, 0, 0)  # zip entries' fixed time: the same wheel bytes (and hashes) on every build


def build_wheel(dest: Path, name: str, version: str, requires: Sequence[str] = (), code: str = "") -> Path:
    """A pure-Python wheel of project ``name`` with one module (``name`` with underscores) holding ``code`` and
    ``__version__``, requiring ``requires``. Same inputs, same bytes."""
    module = name.replace("-", "_")
    dist = f"{module}-{version}"
    files = {
        f"{module}/__init__.py": f"__version__ = {version!r}\n{code}",
        f"{dist}.dist-info/METADATA": "Metadata-Version: 2.1\n"
        f"Name: {name}\nVersion: {version}\n" + "".join(f"Requires-Dist: {r}\n" for r in requires),
        f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: mlflow-kserve-tests\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    record = [f"{path},sha256={_b64(text.encode())},{len(text.encode())}" for path, text in files.items()]
    files[f"{dist}.dist-info/RECORD"] = "\n".join([*record, f"{dist}.dist-info/RECORD,,"]) + "\n"
    dest.mkdir(parents=True, exist_ok=True)
    wheel = dest / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, text in files.items():
            archive.writestr(zipfile.ZipInfo(path, _EPOCH), text)
    return wheel


class LocalIndex:
    """Files under ``root/files``, one JSON page per project under ``root/simple/<name>.json``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "files").mkdir(parents=True, exist_ok=True)
        (root / "simple").mkdir(exist_ok=True)

    def publish(self, wheel: Path, uploaded: datetime | None) -> None:
        """Add ``wheel`` to its project's page, uploaded at ``uploaded`` (any time: the past, or after a model's
        day; None: no upload time, as an index without PEP 700 serves it). The page is rewritten whole
        (atomically), so a reader never sees half of it."""
        name = canonicalize_name(wheel.name.split("-")[0])
        data = wheel.read_bytes()
        (self.root / "files" / wheel.name).write_bytes(data)
        page = self.root / "simple" / f"{name}.json"
        files = json.loads(page.read_text())["files"] if page.exists() else []
        files = [f for f in files if f["filename"] != wheel.name]
        entry = {"filename": wheel.name, "url": f"../../files/{wheel.name}", "size": len(data),
                 "hashes": {"sha256": hashlib.sha256(data).hexdigest()}}  # fmt: skip
        if uploaded is not None:
            entry["upload-time"] = uploaded.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        files.append(entry)
        versions = sorted({f["filename"].split("-")[1] for f in files})
        body = {"meta": {"api-version": "1.1"}, "name": name, "versions": versions, "files": files}
        tmp = page.with_suffix(".tmp")
        tmp.write_text(json.dumps(body, indent=1))
        tmp.replace(page)

    def projects(self) -> list[str]:
        return sorted(p.stem for p in (self.root / "simple").glob("*.json"))


@contextmanager
def serve(index: LocalIndex) -> Iterator[str]:
    """Serve ``index`` over HTTP on 127.0.0.1; yields its simple API URL (``http://127.0.0.1:PORT/simple``)."""
    root = index.root

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._answer(body=True)

        def do_HEAD(self) -> None:  # uv asks for a wheel's headers before reading it
            self._answer(body=False)

        def _answer(self, body: bool) -> None:
            parts = [p for p in self.path.split("?", 1)[0].split("/") if p]
            if parts == ["simple"]:
                projects = [{"name": name} for name in index.projects()]
                self._send(json.dumps({"meta": {"api-version": "1.1"}, "projects": projects}).encode(), JSON_TYPE, body)
            elif len(parts) == 2 and parts[0] == "simple" and (root / "simple" / f"{parts[1]}.json").is_file():
                self._send((root / "simple" / f"{parts[1]}.json").read_bytes(), JSON_TYPE, body)
            elif len(parts) == 2 and parts[0] == "files" and (root / "files" / parts[1]).is_file():
                self._send((root / "files" / parts[1]).read_bytes(), "application/octet-stream", body)
            else:
                self.send_error(404)

        def _send(self, data: bytes, content_type: str, body: bool) -> None:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-cache")  # a page changes when a version is published
            self.end_headers()
            if body:
                self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/simple"
    finally:
        server.shutdown()
        server.server_close()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
