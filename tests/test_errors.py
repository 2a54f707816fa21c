"""Secrets never reach a message: URL credentials and secret query parameters are redacted, plain or encoded."""

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
    ],
)
def test_redact_removes_the_secret(text: str, secret: str) -> None:
    assert secret not in redact(text)


def test_error_text_is_one_redacted_line_with_the_fix() -> None:
    error = InstallError("index https://u:p4ss@idx.example/simple\nunreachable", "check the index")
    assert str(error) == "index https://***@idx.example/simple unreachable; fix: check the index"
    assert FetchError("x").exit_code == 3 and error.exit_code == 7
