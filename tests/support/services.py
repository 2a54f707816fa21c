"""Real services on 127.0.0.1 for the tests: a moto S3 server and an MLflow tracking server + model registry
(sqlite backend, artifacts in that S3 server)."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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

    @property
    def env(self) -> dict[str, str]:
        return {"MLFLOW_TRACKING_URI": self.tracking_uri}


@contextmanager
def mlflow_server(s3: S3, workdir: Path) -> Iterator[Registry]:
    port = free_port()
    mlflow = Path(sys.executable).with_name("mlflow")
    log = open(workdir / "mlflow-server.log", "w")
    proc = subprocess.Popen(
        [
            mlflow, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            "--backend-store-uri", f"sqlite:///{workdir / 'mlflow.db'}",
            "--default-artifact-root", f"s3://{s3.bucket}/mlartifacts", "--no-serve-artifacts",
        ],
        env={**os.environ, **s3.env},
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=workdir,
    )  # fmt: skip
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"mlflow server did not start: {(workdir / 'mlflow-server.log').read_text()[-2000:]}"
                )
            time.sleep(0.5)
        yield Registry(uri)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def register(registry: Registry, s3: S3, name: str, model_dir: Path, alias: str = "champion") -> str:
    """Log ``model_dir`` as a run's artifacts, register it as ``name`` and point ``alias`` at it."""
    import mlflow
    from mlflow import MlflowClient

    saved = {k: os.environ.get(k) for k in s3.env}
    os.environ.update(s3.env)
    try:
        client = MlflowClient(registry.tracking_uri)
        experiment = client.get_experiment_by_name("tests") or client.get_experiment(client.create_experiment("tests"))
        run = client.create_run(experiment.experiment_id)
        client.log_artifacts(run.info.run_id, str(model_dir), "model")
        client.set_terminated(run.info.run_id)
        mlflow.set_tracking_uri(registry.tracking_uri)
        version = mlflow.register_model(f"runs:/{run.info.run_id}/model", name)
        client.set_registered_model_alias(name, alias, version.version)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return f"models:/{name}@{alias}"
