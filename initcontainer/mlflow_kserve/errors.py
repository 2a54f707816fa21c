"""Domain errors. Each carries the documented exit code (docs/reference/cli.md) and a one-line message naming the
cause and the fix.

Only the CLI boundary (cli.py) catches them, prints ``str(error)`` and exits with ``error.exit_code``.
"""

from __future__ import annotations

import re

# The userinfo of a URL's authority: ``user:password@`` or a token alone (``https://TOKEN@host``). The scheme's
# length is bounded: unbounded, each letter of a long word starts a scan to its end (200,000 letters took 129 s).
_URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]{0,31}://)(?P<userinfo>[^/@\s]+)@")
MAX_MESSAGE = 2000  # characters of a message shown; the rest is cut (a model's line can be 200,000)
# In Azure's URIs (``wasbs://container@account.blob.core.windows.net/...``) the userinfo names the container or
# file system: a name the user needs to see ("container not found"), unless it has a password part.
_NAMED_USERINFO_SCHEMES = {"wasbs://", "wasb://", "abfss://", "abfs://"}
# Azure connection strings: ``AccountKey=<key>;`` and ``SharedAccessSignature=<SAS>;`` (up to the next ';').
_CONNECTION_STRING_SECRET = re.compile(r"(?i)\b(?P<key>AccountKey|SharedAccessSignature)=[^;\s]+")
# Query parameters that carry secrets (presigned URLs, SAS tokens' ``sig``), plain or URL-encoded inside another
# URL; also ``NAME_TOKEN=``-style assignments.
_SECRET_QUERY = re.compile(
    r"(?i)(?P<key>(?:x-amz-)?(?:signature|credential|security-token|token|sig|password|secret|key)(?:=|%3D))"
    r"(?:[^&;\s%]|%(?!26|2F|3F|3D)[0-9A-F]{2})+"
)
# HTTP authorization values: ``Bearer <token>`` anywhere, ``Authorization: <scheme> <value>``.
_AUTHORIZATION = re.compile(r"(?i)(?P<kind>\bBearer|\bAuthorization:\s*[A-Za-z-]+)\s+[A-Za-z0-9._~+/=:-]{4,}")


def redact(text: str) -> str:
    """Remove credentials from ``text``: a URL's ``user:password@`` (``https://user:pw@host`` ->
    ``https://***@host``) or token userinfo, secret query parameters (presigned URLs, SAS signatures), Azure
    connection-string keys and SAS values, Bearer tokens and Authorization header values. Keeps the container of a
    ``wasbs://container@account...`` URI: it is a name, not a credential."""
    text = _URL_USERINFO.sub(_mask_userinfo, text)
    text = _CONNECTION_STRING_SECRET.sub(lambda m: f"{m.group('key')}=***", text)
    text = _SECRET_QUERY.sub(lambda m: f"{m.group('key')}***", text)
    return _AUTHORIZATION.sub(lambda m: f"{m.group('kind')} ***", text)


def _mask_userinfo(match: re.Match[str]) -> str:
    scheme, userinfo = match.group("scheme"), match.group("userinfo")
    if scheme.lower() in _NAMED_USERINFO_SCHEMES and ":" not in userinfo:
        return match.group(0)
    return f"{scheme}***@"


class MlflowKserveError(Exception):
    """Base of every error the user sees. ``str()`` is the one-line message, credentials redacted."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        message = redact(" ".join(self.message.split()))  # redacted before it is cut: no half-hidden secret
        if len(message) > MAX_MESSAGE:
            message = message[:MAX_MESSAGE] + "…"
        return message if not self.hint else f"{message}; fix: {redact(' '.join(self.hint.split()))}"


class ConfigError(MlflowKserveError):
    """Bad configuration or flags."""

    exit_code = 2


class FetchError(MlflowKserveError):
    """The model could not be fetched (not found, denied, network) after retries."""

    exit_code = 3


class NotServableError(MlflowKserveError):
    """Not a servable MLflow model (no MLmodel, no python_function flavor, unreadable files)."""

    exit_code = 4


class PolicyError(MlflowKserveError):
    """Dependency policy violation (index/URL/VCS/local-path lines, Python mismatch under strict policy)."""

    exit_code = 5


class ResolveError(MlflowKserveError):
    """Dependencies cannot be resolved together with the serving stack."""

    exit_code = 6


class ConflictError(ResolveError):
    """The resolver found no versions satisfying every requirement; ``detail`` is its explanation, one line."""

    def __init__(self, detail: str, installer: str, hint: str | None = None) -> None:
        super().__init__(f"dependencies cannot be resolved ({installer}): {detail}", hint)
        self.detail = detail
        self.installer = installer


class InstallError(MlflowKserveError):
    """Install failed (index unreachable after retries, build failure)."""

    exit_code = 7


class VerifyError(MlflowKserveError):
    """The model failed to load in the verify step."""

    exit_code = 8
