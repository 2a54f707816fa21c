"""The installer tools (uv, pip) and the environment they run with: caches on the shared volume, or none."""

from __future__ import annotations

import os
import subprocess
import sys
from functools import lru_cache
from pathlib import Path


def uv_binary() -> str:
    """The uv binary shipped with the `uv` package (a dependency), else the one on PATH."""
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        return "uv"


# Bounds on waiting for a package index, per HTTP request: seconds without an answer (a read timeout: a slow but
# moving download is fine), and retries of timeouts, dropped connections and 5xx answers (never of 4xx).
# A hanging index fails the step after about (retries + 1) x timeout. The operator's own variables win.
HTTP_LIMITS = {
    "uv": {"UV_HTTP_TIMEOUT": "30", "UV_HTTP_RETRIES": "3"},
    "pip": {"PIP_TIMEOUT": "30", "PIP_RETRIES": "3"},
}
_OPERATOR_ALIASES = {"PIP_TIMEOUT": ("PIP_DEFAULT_TIMEOUT",), "UV_HTTP_TIMEOUT": ("UV_REQUEST_TIMEOUT",)}


def _http_limits(tool: str) -> dict[str, str]:
    return {
        key: value
        for key, value in HTTP_LIMITS[tool].items()
        if not any(name in os.environ for name in (key, *_OPERATOR_ALIASES.get(key, ())))
    }


def uv_env(cache_dir: Path | None) -> dict[str, str]:
    """uv's cache goes where the caller says (the cache volume, or a scratch folder beside the venv);
    None: no persistent cache. Venvs are built on the same filesystem as that cache, so uv hard-links
    (it copies, with a warning, where it cannot). An operator's own UV_CACHE_DIR / UV_LINK_MODE win."""
    env: dict[str, str] = {"UV_NO_CONFIG": "1", "UV_PYTHON_DOWNLOADS": "never", **_http_limits("uv")}
    if "UV_CACHE_DIR" not in os.environ:
        if cache_dir is not None:
            env["UV_CACHE_DIR"] = str(cache_dir)
        else:
            env["UV_NO_CACHE"] = "1"
    env["UV_LINK_MODE"] = os.environ.get("UV_LINK_MODE", "hardlink" if cache_dir is not None else "copy")
    return env


def pip_env(cache_dir: Path | None) -> dict[str, str]:
    """pip's counterpart of uv_env: its HTTP/wheel cache on the cache volume, or no cache."""
    env = {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1", "PIP_PROGRESS_BAR": "off", **_http_limits("pip")}
    # Like UV_NO_CONFIG: no pip.conf of the image decides indexes; the operator's flags and PIP_* env do.
    env["PIP_CONFIG_FILE"] = os.environ.get("PIP_CONFIG_FILE", os.devnull)
    if "PIP_CACHE_DIR" not in os.environ:
        if cache_dir is not None:
            env["PIP_CACHE_DIR"] = str(cache_dir)
        else:
            env["PIP_NO_CACHE_DIR"] = "1"
    return env


@lru_cache(maxsize=4)
def pip_resolves_as_of(python: str = sys.executable) -> bool:
    """Whether the pip that pip-compile runs on (``python``'s) has ``--uploaded-prior-to`` (pip >= 26): asked of
    that pip itself, not inferred from its version number."""
    try:
        out = subprocess.run(
            [python, "-m", "pip", "install", "--help"], capture_output=True, text=True, timeout=120, check=False,
            env={**os.environ, **pip_env(None)},
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return False
    return "--uploaded-prior-to" in out.stdout
