"""``s3://bucket/prefix`` with boto3, configured as the model fetch is: credentials from the standard chain
(``AWS_*``, IRSA), the endpoint from ``MLFLOW_S3_ENDPOINT_URL`` (MLflow's) or ``AWS_ENDPOINT_URL_S3`` /
``AWS_ENDPOINT_URL``, TLS checks off only with MLflow's ``MLFLOW_S3_IGNORE_TLS=true``. Uploads use boto3's
managed multipart transfers; a read is one GET streamed as it arrives (boto3's managed download, parallel ranges
written to a file, moved the iris venv's 206 MB archive from a local S3 server at 80 MB/s where one GET streams
1 GB/s), resumed by a ranged GET where a body breaks off."""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

from mlflow_kserve.env_store.backend import Bounds, join, split_bucket


class S3Backend:
    def __init__(self, uri: str, bounds: Bounds) -> None:
        import boto3
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        self.location = uri
        self.bucket, self.prefix = split_bucket(uri)
        endpoint = (
            os.environ.get("MLFLOW_S3_ENDPOINT_URL")
            or os.environ.get("AWS_ENDPOINT_URL_S3")
            or os.environ.get("AWS_ENDPOINT_URL")
            or None
        )
        config = Config(
            connect_timeout=bounds.connect_timeout,
            read_timeout=bounds.read_timeout,
            retries={"mode": "standard", "total_max_attempts": bounds.attempts},
        )
        verify = False if os.environ.get("MLFLOW_S3_IGNORE_TLS", "").lower() == "true" else None
        self.client = boto3.client("s3", endpoint_url=endpoint, verify=verify, config=config)
        # s3transfer retries a body that breaks off on its own (5 times by default): bounded alike
        self.transfer = TransferConfig(num_download_attempts=bounds.attempts)

    def read(self, name: str) -> bytes | None:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=join(self.prefix, name))["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None

    def stream(self, name: str, offset: int = 0) -> IO[bytes]:
        ranged = {"Range": f"bytes={offset}-"} if offset else {}
        return self.client.get_object(Bucket=self.bucket, Key=join(self.prefix, name), **ranged)["Body"]

    def write(self, name: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=join(self.prefix, name), Body=data)

    def upload(self, src: Path, name: str) -> None:
        self.client.upload_file(str(src), self.bucket, join(self.prefix, name), Config=self.transfer)
