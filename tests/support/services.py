"""Real services on 127.0.0.1 for the tests: a moto S3 server, an MLflow tracking server + model registry
(sqlite backend, artifacts in that S3 server; or with MLflow's basic-auth app, serving artifacts as a proxy), a
moto S3 server that checks credentials (denies everyone), an HTTP server speaking MLflow's artifact proxy API
that can fail its first requests (transient errors), and an OCI registry (Debian's docker-registry, plain HTTP).
The GCS and Azure emulators are in support.emulators."""

from __future__ import annotations

import http.client
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3

BUCKET = "models"
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing-key-id", "AWS_SECRET_ACCESS_KEY": "testing-secret-key"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class S3:
    endpoint: str
    bucket: str

    @property
    def env(self) -> dict[str, str]:
        """What a client process needs: the endpoint for MLflow and boto3, and (fake) credentials."""
        return {
            **FAKE_CREDENTIALS,
            "AWS_DEFAULT_REGION": "us-east-1",
            "MLFLOW_S3_ENDPOINT_URL": self.endpoint,
            "AWS_ENDPOINT_URL_S3": self.endpoint,
        }

    def client(self):
        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1", **_boto_credentials())

    def upload_dir(self, local: Path, prefix: str) -> str:
        client = self.client()
        for path in sorted(local.rglob("*")):
            if path.is_file():
                client.upload_file(str(path), self.bucket, f"{prefix}/{path.relative_to(local).as_posix()}")
        return f"s3://{self.bucket}/{prefix}"


def _boto_credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    }


@contextmanager
def moto_s3(host: str = "127.0.0.1") -> Iterator[S3]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per S3 request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    try:
        s3 = S3(f"http://{host}:{port}", BUCKET)
        s3.client().create_bucket(Bucket=BUCKET)
        yield s3
    finally:
        server.stop()


@dataclass(frozen=True)
class Registry:
    tracking_uri: str
    credentials: tuple[str, str] | None = None  # (username, password) of MLflow's basic-auth app

    @property
    def env(self) -> dict[str, str]:
        env = {"MLFLOW_TRACKING_URI": self.tracking_uri}
        if self.credentials:
            env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"] = self.credentials
        return env


@contextmanager
def mlflow_server(
    s3: S3, workdir: Path, *, auth_password: str | None = None, startup_seconds: float = 600
) -> Iterator[Registry]:
    """``mlflow server`` on a free port. Default: clients read and write the artifacts in S3 themselves. With
    ``auth_password``: MLflow's basic-auth app (user ``admin``), and the server proxies the artifacts (kept in
    S3 under ``proxied/``): clients reach them through http(s):// and mlflow-artifacts:/ URIs, with credentials."""
    port = free_port()
    mlflow = Path(sys.executable).with_name("mlflow")
    log = open(workdir / "mlflow-server.log", "w")
    command = [mlflow, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
               "--backend-store-uri", f"sqlite:///{workdir / 'mlflow.db'}"]  # fmt: skip
    env = {**os.environ, **s3.env}
    if auth_password is None:
        command += ["--default-artifact-root", f"s3://{s3.bucket}/mlartifacts", "--no-serve-artifacts"]
    else:
        command += [
            "--app-name",
            "basic-auth",
            "--serve-artifacts",
            "--artifacts-destination",
            f"s3://{s3.bucket}/proxied",
        ]
        env |= {"MLFLOW_AUTH_ADMIN_PASSWORD": auth_password, "MLFLOW_FLASK_SERVER_SECRET_KEY": "tests-only"}
    proc = subprocess.Popen(
        command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=workdir,
        start_new_session=True,  # its own process group: its job runner child is stopped with it
    )  # fmt: skip
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{uri}/health", proc, startup_seconds, workdir / "mlflow-server.log")  # a loaded machine is slow
        yield Registry(uri, None if auth_password is None else ("admin", auth_password))
    finally:
        stop(proc)
        kill_group(proc.pid)
        log.close()


def register(registry: Registry, s3: S3, name: str, model_dir: Path, alias: str = "champion") -> str:
    """Log ``model_dir`` as a run's artifacts, register it as ``name`` and point ``alias`` at it. Changes no
    global state (MLflow's tracking URI stays what it was): tests use several registries."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    env = {**s3.env, **registry.env}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        client = MlflowClient(registry.tracking_uri)
        experiment = client.get_experiment_by_name("tests") or client.get_experiment(client.create_experiment("tests"))
        run = client.create_run(experiment.experiment_id)
        client.log_artifacts(run.info.run_id, str(model_dir), "model")
        client.set_terminated(run.info.run_id)
        try:
            client.create_registered_model(name)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        version = client.create_model_version(name, f"{run.info.artifact_uri}/model", run.info.run_id)
        client.set_registered_model_alias(name, alias, version.version)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return f"models:/{name}@{alias}"


@contextmanager
def oci_registry(workdir: Path) -> Iterator[str]:
    """An OCI (Docker distribution) registry on 127.0.0.1, plain HTTP, no auth, blobs under ``workdir``: the
    ``docker-registry`` server of Debian's package of that name. Yields ``host:port``."""
    binary = Path("/usr/bin/docker-registry")
    if not binary.exists():
        raise RuntimeError("no /usr/bin/docker-registry: apt-get install docker-registry")
    port = free_port()
    config = workdir / "registry.yml"
    config.write_text(
        "version: 0.1\n"
        "log: {level: warn}\n"
        f"storage: {{filesystem: {{rootdirectory: {workdir / 'blobs'}}}, delete: {{enabled: true}}}}\n"
        f"http: {{addr: '127.0.0.1:{port}'}}\n"
    )
    log = workdir / "registry.log"
    with log.open("w") as out:
        proc = subprocess.Popen([binary, "serve", config], stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_for(f"http://127.0.0.1:{port}/v2/", proc, 60, log)
            yield f"127.0.0.1:{port}"
        finally:
            stop(proc)


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, seconds: float = 30) -> None:
    """Stop a server process with ``sig``; kill it when it does not exit within ``seconds``."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def kill_group(pgid: int) -> None:
    """SIGKILL what is left of a process group (children a server leaves behind when it stops)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def wait_for(url: str, proc: subprocess.Popen, seconds: float, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not come up: {log.read_text()[-2000:]}")
        time.sleep(0.2)


@contextmanager
def moto_s3_checking_credentials(workdir: Path) -> Iterator[str]:
    """A second moto S3 server (a subprocess: moto reads this setting at import) that authenticates every
    request against its IAM, where no user exists: any access key gets 403 InvalidAccessKeyId. Yields the
    endpoint URL."""
    port = free_port()
    log = workdir / "moto-auth.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"}, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        endpoint = f"http://127.0.0.1:{port}"
        try:
            wait_for(f"{endpoint}/moto-api/", proc, 60, log)
            yield endpoint
        finally:
            stop(proc)


ARTIFACTS_API = "/api/2.0/mlflow-artifacts/artifacts"


@dataclass
class ArtifactServer:
    """A running artifact server: ``uri(name)`` is an http:// model URI MLflow downloads through its
    HttpArtifactRepository; ``requests`` lists every request path with the status answered."""

    base: str
    requests: list[tuple[str, int]] = field(default_factory=list)

    def uri(self, name: str, query: str = "") -> str:
        return f"{self.base}{ARTIFACTS_API}/{name}" + (f"?{query}" if query else "")

    def failures(self) -> int:
        return sum(1 for _path, status in self.requests if status != 200)


@contextmanager
def artifact_http_server(
    root: Path, *, fail_first: int = 0, status: int = 503, delay: float = 0.0, planted: tuple[str, ...] = ()
) -> Iterator[ArtifactServer]:
    """Serve the directory ``root`` the way ``mlflow server --serve-artifacts`` does (list: GET
    ``/api/2.0/mlflow-artifacts/artifacts?path=P`` -> {"files": [...]}; download: GET ``.../artifacts/P``),
    answering the first ``fail_first`` requests with ``status`` instead, each file after ``delay`` seconds.
    ``planted``: extra file names put in every listing (e.g. ``../../evil.txt``, as a hostile server would),
    each served as a few bytes."""
    state = ArtifactServer("")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            if len(state.requests) < fail_first:
                return self._send(status, b'{"error_code": "TEMPORARILY_UNAVAILABLE"}', url.path)
            if url.path == ARTIFACTS_API:
                rel = urllib.parse.parse_qs(url.query).get("path", [""])[0]
                folder = (root / rel).resolve()
                if not folder.is_dir() or not folder.is_relative_to(root.resolve()):
                    return self._send(200, b'{"files": []}', url.path)
                files = [
                    {"path": c.name, "is_dir": c.is_dir(), **({} if c.is_dir() else {"file_size": c.stat().st_size})}
                    for c in sorted(folder.iterdir())
                ] + [{"path": p, "is_dir": False, "file_size": 7} for p in planted]
                return self._send(200, json.dumps({"files": files}).encode(), url.path)
            if url.path.startswith(ARTIFACTS_API + "/"):
                if urllib.parse.unquote(url.path[len(ARTIFACTS_API) + 1 :]) in planted:
                    return self._send(200, b"planted", url.path, "application/octet-stream")
                target = (root / urllib.parse.unquote(url.path[len(ARTIFACTS_API) + 1 :])).resolve()
                if target.is_file() and target.is_relative_to(root.resolve()):
                    time.sleep(delay)
                    return self._send(200, target.read_bytes(), url.path, "application/octet-stream")
            return self._send(404, b'{"error_code": "RESOURCE_DOES_NOT_EXIST"}', url.path)

        def _send(self, code: int, body: bytes, path: str, kind: str = "application/json") -> None:
            state.requests.append((path, code))
            respond(self, code, body, kind)

        def log_message(self, *args: object) -> None:
            pass

    with serving(ThreadingHTTPServer(("127.0.0.1", 0), Handler)) as server:
        state.base = f"http://127.0.0.1:{server.server_address[1]}"
        yield state


def respond(handler: BaseHTTPRequestHandler, code: int, body: bytes, kind: str) -> None:
    """Send one complete response from a request handler."""
    handler.send_response(code)
    handler.send_header("Content-Type", kind)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


@contextmanager
def serving(server: ThreadingHTTPServer) -> Iterator[ThreadingHTTPServer]:
    """Run ``server`` in a thread while the block runs."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class FaultyServer:
    """A running fault-injecting HTTP server: ``url``; ``requests`` lists every request path it received."""

    url: str
    requests: list[str] = field(default_factory=list)

    def count(self, fragment: str = "") -> int:
        return sum(1 for path in self.requests if fragment in path)


# How a failing package index answers every request (see package_index()).
INDEX_MODES = ("status", "garbage-json", "hang", "slow-body")


@contextmanager
def package_index(mode: str, status: int = 500, max_path: int = 0) -> Iterator[FaultyServer]:
    """A package index on 127.0.0.1 that never serves a package: every request gets ``status`` ("status"), a
    PEP 691 JSON content type with bytes that are not JSON ("garbage-json"), no answer at all ("hang"), or
    headers and then a body that stalls after a few bytes ("slow-body"). ``max_path``: longer request paths get
    414 URI Too Long, as real servers answer a huge project name. ``url`` is the index (…/simple)."""
    state = FaultyServer("")
    stop_event = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            state.requests.append(self.path)
            if max_path and len(self.path) > max_path:
                return self._send(414, b"URI Too Long", "text/plain")
            if mode == "hang":
                stop_event.wait(600)
                return None
            if mode == "garbage-json":
                return self._send(200, b"\x00\xffnot json{{", "application/vnd.pypi.simple.v1+json")
            if mode == "slow-body":
                self.send_response(200)
                self.send_header("Content-Type", "application/vnd.pypi.simple.v1+json")
                self.send_header("Content-Length", "100000")
                self.end_headers()
                self.wfile.write(b'{"meta": {"api-version": "1.0"}, ')
                self.wfile.flush()
                stop_event.wait(600)
                return None
            return self._send(status, f"<html><body>{status}</body></html>".encode(), "text/html")

        def _send(self, code: int, body: bytes, kind: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            if code == 401:
                self.send_header("WWW-Authenticate", 'Basic realm="index"')
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}/simple"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        stop_event.set()
        server.shutdown()
        server.server_close()


@contextmanager
def failing_proxy(
    upstream: str, *, fail_first: int, status: int = 500, truncate_over: int = 0
) -> Iterator[FaultyServer]:
    """An HTTP reverse proxy in front of ``upstream`` (the moto S3 server) that answers its first ``fail_first``
    requests with ``status`` and an S3 ``InternalError`` body, then forwards every request unchanged (headers
    and body: moto does not check signatures). ``truncate_over``: a GET whose body is longer is answered with its
    full Content-Length but only half the body, then the connection is closed (a download cut short).
    ``url`` is the endpoint to give clients."""
    state = FaultyServer("")
    target = urllib.parse.urlsplit(upstream)
    error = (
        b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code>'
        b"<Message>We encountered an internal error. Please try again.</Message></Error>"
    )

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _handle(self) -> None:
            state.requests.append(f"{self.command} {self.path}")
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            if len(state.requests) <= fail_first:
                return self._reply(status, [("Content-Type", "application/xml")], error)
            connection = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
            try:
                headers = {key: value for key, value in self.headers.items() if key.lower() != "connection"}
                connection.request(self.command, self.path, body=body, headers=headers)
                answer = connection.getresponse()
                payload = answer.read()
                kept = [(k, v) for k, v in answer.getheaders() if k.lower() not in ("transfer-encoding", "connection")]
                self._reply(answer.status, kept, payload)
            finally:
                connection.close()

        def _reply(self, code: int, headers: list[tuple[str, str]], payload: bytes) -> None:
            self.send_response(code)
            for key, value in headers:
                if key.lower() != "content-length":
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if truncate_over and self.command == "GET" and len(payload) > truncate_over:
                self.wfile.write(payload[: len(payload) // 2])
                self.close_connection = True
            elif self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
