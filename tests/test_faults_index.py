"""Fault suite: a package index that answers 4xx, 5xx, garbage, or hangs (a local HTTP server), and requirement
names no index can serve. A 4xx is not an outage: it fails at once with its own code (401/403: 7 "refused
access"; another 4xx: 6 naming the package); 5xx and silence are retried a bounded number of times
(UV_HTTP_RETRIES / UV_HTTP_TIMEOUT, set by the product, overridden here as an operator would) and end in 7."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support.faults import INDEX_PASSWORD, Dirs, assert_fails, cli, planted
from support.models import BuiltModel
from support.services import package_index
from support.variants import with_requirement_lines

pytestmark = pytest.mark.timeout(600)
FAST = {"UV_HTTP_RETRIES": "1", "UV_HTTP_TIMEOUT": "3"}  # an operator's override of the product's bounds


def _init_against(index_url: str, model: Path, tmp_path: Path, **env: str):
    dirs = Dirs(tmp_path / "pod")
    proc = cli("init", str(model), dirs, planted(os.environ, **env), "--index-url", index_url)
    return proc, dirs


def _with_credentials(url: str) -> str:
    return url.replace("http://", f"http://mirror-user:{INDEX_PASSWORD}@")


@pytest.mark.parametrize(
    ("status", "code", "words"),
    [
        (401, 7, ["the package index refused access (401)", "check the index credentials"]),
        (403, 7, ["the package index refused access (403)", "check the index credentials"]),
        (400, 6, ["the package index rejected the request for", "(HTTP 400)"]),
        (414, 6, ["the package index rejected the request for", "(HTTP 414)"]),
        (404, 6, ["was not found in the package registry"]),
        (500, 7, ["package index unreachable while resolving", "UV_HTTP_RETRIES"]),
        (503, 7, ["package index unreachable while resolving"]),
    ],
)
def test_index_answering_an_error(
    status: int, code: int, words: list[str], models: dict[str, BuiltModel], tmp_path: Path
) -> None:
    with package_index("status", status) as index:
        proc, dirs = _init_against(_with_credentials(index.url), models["sklearn-columns"].path, tmp_path, **FAST)
    assert_fails(proc, code, dirs, *words)
    # 4xx: asked once per project and lock, never retried; 5xx: the first try and UV_HTTP_RETRIES=1 retry, no more.
    # A 404 is uv's "not found in the package registry", a failed resolution: auto then locks MLServer's set too
    # (one more request per project), as it would for any conflict of the mlflow backend's; not a third time
    # without the optional orjson, which the resolver's explanation does not name.
    tries = {path: index.requests.count(path) for path in index.requests}
    assert max(tries.values()) == (2 if status >= 500 or status == 404 else 1), tries


def test_index_answering_garbage(models: dict[str, BuiltModel], tmp_path: Path) -> None:
    with package_index("garbage-json") as index:
        proc, dirs = _init_against(index.url, models["sklearn-columns"].path, tmp_path, **FAST)
    assert_fails(proc, 7, dirs, "answered with something that is not a package index", "/simple")


@pytest.mark.parametrize("mode", ["hang", "slow-body"])
def test_index_that_hangs_is_bounded_by_the_timeout(mode: str, models: dict[str, BuiltModel], tmp_path: Path) -> None:
    with package_index(mode) as index:
        proc, dirs = _init_against(index.url, models["sklearn-columns"].path, tmp_path, **FAST)
    assert_fails(proc, 7, dirs, "package index unreachable while resolving", "timed out")
    assert max(index.requests.count(path) for path in index.requests) <= 2, index.requests  # a try, a retry


def test_a_name_too_long_for_the_index_fails_fast_as_a_resolution_failure(
    models: dict[str, BuiltModel], tmp_path: Path
) -> None:
    model = with_requirement_lines(models["sklearn-columns"].path, tmp_path / "model", "a" * 20_000)
    with package_index("status", 404, max_path=8000) as index:
        proc, dirs = _init_against(index.url, model, tmp_path, **FAST)
    line = assert_fails(proc, 6, dirs, "the package index rejected the request for 'aaaa", "(20,000 characters)")
    assert "(HTTP 414)" in line and "unreachable" not in line
    assert index.count("a" * 8000) == 1, "a 4xx is not retried"


def test_a_200000_character_name_on_the_default_index(models: dict[str, BuiltModel], tmp_path: Path) -> None:
    """uv refuses to build the URL at all: no request, a resolution failure naming the package, cut short."""
    model = with_requirement_lines(models["sklearn-columns"].path, tmp_path / "model", "b" * 200_000)
    dirs = Dirs(tmp_path / "pod")
    proc = cli("init", str(model), dirs, planted(os.environ))
    assert_fails(proc, 6, dirs, "the package index rejected the request for 'bbbb", "(200,000 characters)")


def test_pip_installer_index_refusing_access(models: dict[str, BuiltModel], tmp_path: Path) -> None:
    with package_index("status", 401) as index:
        proc_pip = cli(
            "init", str(models["sklearn-columns"].path), Dirs(tmp_path / "pip"),
            planted(os.environ, PIP_RETRIES="0"), "--index-url", _with_credentials(index.url), "--installer", "pip",
        )  # fmt: skip
    assert_fails(proc_pip, 7, Dirs(tmp_path / "pip"), "the package index refused access (401)", "(pip)")
