"""Local servers for the stores beyond S3 and MLflow, started by the tests themselves on free ports:

- ``gcs_emulator()``: gcp-storage-emulator (PyPI), the GCS JSON API; clients reach it through
  ``STORAGE_EMULATOR_HOST``. It checks no credentials, so ``gcs_denying_server()`` stands in for a bucket the
  credentials may not read: it answers every request as GCS does then (403, GCS's JSON error body).
- ``azurite()``: Azurite's Blob service (npm, installed in .tools/azurite by ci/install-tools.sh); clients reach it
  through ``AZURE_STORAGE_CONNECTION_STRING``, and it checks the account key's signature on every request.
- ``dead_endpoint()``: a TCP server that resets every connection as soon as the client has spoken, recording what
  it said: an endpoint that is down, where the tests count how often each client tried.
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from support.services import BUCKET, free_port, respond, serving, stop, wait_for

ROOT = Path(__file__).resolve().parents[2]
AZURITE = ROOT / ".tools" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
# Azurite's development account: its documented, public name and key.
AZURE_ACCOUNT = "devstoreaccount1"
AZURE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
WRONG_AZURE_KEY = "d3Jvbmcta2V5LWZvci10aGUtZGVuaWVkLXRlc3Q="  # base64, signs every request wrongly


@dataclass(frozen=True)
class GCS:
    endpoint: str

    @property
    def env(self) -> dict[str, str]:
        return {"STORAGE_EMULATOR_HOST": self.endpoint}

    def upload_dir(self, local: Path, prefix: str) -> str:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        options = {"api_endpoint": self.endpoint}
        client = storage.Client(project="tests", credentials=AnonymousCredentials(), client_options=options)
        bucket = client.bucket(BUCKET)
        for path in sorted(local.rglob("*")):
            if path.is_file():
                bucket.blob(f"{prefix}/{path.relative_to(local).as_posix()}").upload_from_filename(str(path))
        return f"gs://{BUCKET}/{prefix}"


@contextmanager
def gcs_emulator(workdir: Path) -> Iterator[GCS]:
    port = free_port()
    gcs = GCS(f"http://127.0.0.1:{port}")
    emulator = Path(sys.executable).with_name("gcp-storage-emulator")
    command = [emulator, "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory", "--default-bucket", BUCKET]
    with _running(command, workdir / "gcs-emulator.log", f"{gcs.endpoint}/storage/v1/b/{BUCKET}"):
        yield gcs


@contextmanager
def gcs_denying_server() -> Iterator[GCS]:
    """Answers every request with GCS's 403 for a principal without ``storage.objects.list`` on the bucket."""
    body = json.dumps({"error": {"code": 403, "message": "tests@example.iam.gserviceaccount.com does not have "
                       "storage.objects.list access to the Google Cloud Storage bucket.",
                       "errors": [{"reason": "forbidden", "domain": "global"}]}}).encode()  # fmt: skip

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            respond(self, 403, body, "application/json; charset=UTF-8")

        def log_message(self, *args: object) -> None:
            pass

    with serving(ThreadingHTTPServer(("127.0.0.1", 0), Handler)) as server:
        yield GCS(f"http://127.0.0.1:{server.server_address[1]}")


@dataclass(frozen=True)
class Azure:
    endpoint: str  # the account's Blob endpoint, http://127.0.0.1:PORT/devstoreaccount1

    def connection_string(self, key: str = AZURE_KEY) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={AZURE_ACCOUNT};AccountKey={key};"
                f"BlobEndpoint={self.endpoint};")  # fmt: skip

    @property
    def env(self) -> dict[str, str]:
        return {"AZURE_STORAGE_CONNECTION_STRING": self.connection_string()}

    def uri(self, container: str, path: str) -> str:
        """MLflow's form; with a connection string the client talks to its BlobEndpoint."""
        return f"wasbs://{container}@{AZURE_ACCOUNT}.blob.core.windows.net/{path}"

    def upload_dir(self, local: Path, prefix: str) -> str:
        from azure.storage.blob import BlobServiceClient

        service = BlobServiceClient.from_connection_string(self.connection_string())
        container = service.get_container_client(BUCKET)
        if not container.exists():
            container.create_container()
        for path in sorted(local.rglob("*")):
            if path.is_file():
                container.upload_blob(
                    f"{prefix}/{path.relative_to(local).as_posix()}", path.read_bytes(), overwrite=True
                )
        return self.uri(BUCKET, prefix)


@contextmanager
def azurite(workdir: Path) -> Iterator[Azure]:
    if not AZURITE.exists():
        raise RuntimeError(f"{AZURITE} is missing: run `bash ci/install-tools.sh` (make setup does)")
    port = free_port()
    azure = Azure(f"http://127.0.0.1:{port}/{AZURE_ACCOUNT}")
    data = workdir / "azurite"
    data.mkdir(exist_ok=True)
    command = [AZURITE, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", str(data), "--silent",
               "--disableTelemetry", "--skipApiVersionCheck"]  # fmt: skip
    with _running(command, workdir / "azurite.log", f"{azure.endpoint}?comp=list"):
        yield azure


@contextmanager
def _running(command: list[str | Path], log: Path, ready_url: str) -> Iterator[None]:
    """Run a server process (output in ``log``) until the block ends; first wait until ``ready_url`` answers."""
    with log.open("w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_for(ready_url, proc, 180, log)
            yield
        finally:
            stop(proc)


@dataclass
class DeadEndpoint:
    """``url`` (http://127.0.0.1:PORT); ``requests``: the first line each connection sent (a request line, or
    the start of a TLS handshake), in order."""

    url: str
    requests: list[str] = field(default_factory=list)

    def count(self, needle: str = "") -> int:
        return sum(1 for line in self.requests if needle in line)


@contextmanager
def dead_endpoint() -> Iterator[DeadEndpoint]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    dead = DeadEndpoint(f"http://127.0.0.1:{listener.getsockname()[1]}")
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    first = conn.recv(4096).split(b"\r\n", 1)[0]
                except OSError:
                    first = b""
                dead.requests.append(first.decode("latin-1"))
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with RST

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield dead
    finally:
        done.set()
        listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        listener.close()
        thread.join(10)
