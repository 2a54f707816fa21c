"""What uv's or pip's output says went wrong with the package index or the disk: the failures the lock step
(resolving) and the install step share, each turned into the documented exit code.

An index's 4xx answer is not an outage: 401/403 is access denied (exit 7, "check the credentials"), another 4xx
for a package (a name the index rejects, e.g. 200,000 characters long) fails the resolution (exit 6, naming the
package). Only no answer, timeouts and 5xx after the tool's own retries are "unreachable" (exit 7). uv does not
retry 4xx answers; its retries and timeout are bounded by tools.HTTP_LIMITS.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from mlflow_kserve.errors import InstallError, MlflowKserveError, ResolveError
from mlflow_kserve.modelfiles import shorten

_DISK = re.compile(r"No space left on device|Disk quota exceeded|os error 28\b|os error 122\b", re.IGNORECASE)
_DENIED = re.compile(
    r"\(40[13] [A-Za-z ]+\)|lack of valid authentication credentials|returned a 403|"
    r"40[13] Error, Credentials not correct|\b40[13] Client Error",
    re.IGNORECASE,
)
_STATUS = re.compile(r"\b(40[13])\b")
LINE_CHARS = 400  # of a tool's line quoted in a message
_REJECTED = re.compile(
    r"HTTP status client error \((?P<status>4\d\d)[^)]*\) for url \((?P<url>[^)\s]*)\)|"
    r"builder error for url \((?P<bad>[^)\s]*)\)",
)
_NOT_AN_INDEX = re.compile(
    r"Received some unexpected (?:JSON|HTML)|Failed to parse|JSONDecodeError|unexpected content type|"
    r"Expecting value: line \d+",
    re.IGNORECASE,
)
_NETWORK = re.compile(
    r"Failed to fetch|error sending request|Connection refused|dns error|failed to lookup address|"
    r"timed out|Max retries exceeded|NewConnectionError|ConnectTimeout|Could not fetch URL|"
    r"HTTP status server error|status code 5\d\d|certificate|SSL|Request failed after",
    re.IGNORECASE,
)
_INDEX_FIX = "check --index-url / PIP_INDEX_URL / UV_INDEX_URL, network policy and the CA bundle (SSL_CERT_FILE)"


def index_or_disk_failure(output: str, tool: str, doing: str) -> MlflowKserveError | None:
    """The error ``output`` shows, if it is one of the shared kinds; None for the step to classify (a
    conflict, a build failure, a hash mismatch). ``doing``: "resolving" or "installing"."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    if _DISK.search(output):
        return InstallError(
            f"no space left on device while {doing} ({tool}): {_line(lines, _DISK)}",
            "give the volume more room: --env-dir (chart: volumes.envSizeLimit) or the cache volume "
            "(cache.size; --cache-max-bytes keeps it bounded)",
        )
    denied = _DENIED.search(output)
    if denied:
        found = _STATUS.search(denied.group(0)) or _STATUS.search(output)
        status = found.group(1) if found else "401/403"
        return InstallError(
            f"the package index refused access ({status}) while {doing} ({tool}): {_line(lines, _DENIED)}",
            "check the index credentials (user:token in --index-url, chart: dependencies.privateIndex.existingSecret)"
            " and that this account may read the index",
        )
    rejected = _REJECTED.search(output)
    if rejected:
        package = _package(rejected.group("url") or rejected.group("bad") or "")
        status = f"HTTP {rejected.group('status')}" if rejected.group("status") else "not a valid URL"
        message = f"the package index rejected the request for {package} ({status}) while {doing} ({tool})"
        if doing == "resolving":
            return ResolveError(message, "check that requirement's name in the model's requirements")
        return InstallError(message, "re-run init to lock again; check that the index serves the locked files")
    if _NOT_AN_INDEX.search(output):
        return InstallError(
            f"the package index answered with something that is not a package index while {doing} ({tool}): "
            f"{_line(lines, _NOT_AN_INDEX)}",
            "point --index-url at a PEP 503 simple index (usually ending in /simple)",
        )
    if _NETWORK.search(output) and "Because" not in output:
        return InstallError(
            f"package index unreachable while {doing} ({tool}): {_line(lines, _NETWORK)}",
            f"{_INDEX_FIX}; slow index: raise UV_HTTP_TIMEOUT / UV_HTTP_RETRIES (pip: PIP_TIMEOUT / PIP_RETRIES)",
        )
    return None


def _line(lines: list[str], pattern: re.Pattern[str]) -> str:
    """The most telling line: the last one matching ``pattern`` (uv prints the root cause last), cut short."""
    matching = [line for line in lines if pattern.search(line)] or lines[-1:]
    text = re.sub(r"^(?:error|cause|ERROR|WARNING|hint):\s*", "", matching[-1]) if matching else ""
    return text if len(text) <= LINE_CHARS else f"{text[:LINE_CHARS]}… ({len(text):,} characters)"


def _package(url: str) -> str:
    """``https://idx/simple/<name>/`` → the project name, cut short (a 200,000-character one is not printed)."""
    parts = [p for p in unquote(url).split("/") if p]
    name = parts[-1] if parts else url
    return repr(shorten(name))
