"""Secrets never reach a message: URL credentials, tokens, secret query parameters (plain or encoded) and Azure
connection-string keys are redacted; names that only look like credentials (a wasbs:// container) are not."""

from __future__ import annotations

import pytest
from mlflow_kserve.errors import FetchError, InstallError, redact


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("https://user:hunter2@pypi.corp.example/simple", "hunter2"),
        ("s3 presigned https://b.s3.amazonaws.com/k?X-Amz-Signature=abcdef&X-Amz-Credential=AKIA1", "abcdef"),
        ("https://acct.blob.core.windows.net/c/m?sv=2022&sig=Zm9vYmFy%2Bcw%3D&se=2026", "Zm9vYmFy"),
        ("GET http://h/api%3Ftoken%3Dpa55word%2Fmodel", "pa55word"),
        ("https://ghp_t0ken1234@git.corp.example/org/repo.git", "ghp_t0ken1234"),  # a token as the user
        ("wasbs://models:hunter2@acct.blob.core.windows.net/m", "hunter2"),  # a password even in Azure's form
        ("DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=c2VjcmV0+a2V5/w==;EndpointSuffix=x", "c2VjcmV0"),
        ("BlobEndpoint=https://acct.blob.core.windows.net/;SharedAccessSignature=sv=2024-11-04&ss=b&sig=U0FT%3D",
         "U0FT"),
        ("AZURE_STORAGE_SAS_TOKEN=sv=2024-11-04&sp=rl&sig=c2lnbmF0dXJl", "c2lnbmF0dXJl"),
        ("request headers: Authorization: Basic YWRtaW46cGFzc3dvcmQ=", "YWRtaW46cGFzc3dvcmQ="),
        ("401: Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig was rejected", "eyJhbGciOiJIUzI1NiJ9"),
        ("MLFLOW_TRACKING_TOKEN=dapi0123456789", "dapi0123456789"),
    ],
)  # fmt: skip
def test_redact_removes_the_secret(text: str, secret: str) -> None:
    assert secret not in redact(text)


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        # the connection string's other parts, the SAS's non-secret fields and the URI's host and path stay
        ("AccountName=acct;AccountKey=c2VjcmV0;BlobEndpoint=http://127.0.0.1:10000/acct;",
         "AccountName=acct;AccountKey=***;BlobEndpoint=http://127.0.0.1:10000/acct;"),
        ("https://acct.blob.core.windows.net/c/m?sv=2024-11-04&sp=rl&sig=c2lnbmF0dXJl",
         "https://acct.blob.core.windows.net/c/m?sv=2024-11-04&sp=rl&sig=***"),
        ("https://user:pw@idx.example/simple", "https://***@idx.example/simple"),
        ("Basic authentication failed for this request", "Basic authentication failed for this request"),
    ],
)  # fmt: skip
def test_redact_masks_only_the_secret(text: str, kept: str) -> None:
    assert redact(text) == kept


@pytest.mark.parametrize(
    "uri",
    [
        "wasbs://no-such-container@acct.blob.core.windows.net/models/fraud",
        "abfss://models@acct.dfs.core.windows.net/fraud",
    ],
)
def test_an_azure_container_is_a_name_not_a_credential(uri: str) -> None:
    """A "container not found" names the container: wasbs://<container>@<account> has no password part."""
    assert redact(f"model not found at {uri} (ContainerNotFound)") == f"model not found at {uri} (ContainerNotFound)"


def test_error_text_is_one_redacted_line_with_the_fix() -> None:
    error = InstallError("index https://u:p4ss@idx.example/simple\nunreachable", "check the index")
    assert str(error) == "index https://***@idx.example/simple unreachable; fix: check the index"
    assert FetchError("x").exit_code == 3 and error.exit_code == 7
