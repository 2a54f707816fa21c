"""The one typed configuration object, built once from the CLI options (flags or MLFLOW_KSERVE_* env)."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from mlflow_kserve.errors import ConfigError


def _default_python() -> str:
    """The base interpreter (not a venv's): the venv built from it must exist in the server image too."""
    base = getattr(sys, "_base_executable", None) or sys.executable
    return str(Path(base))


def default_model_name(uri: str) -> str:
    """A DNS-1123-ish model name from the URI: the registered model's name, else the last path segment."""
    match = re.match(r"^models:/([^/@]+)", uri)
    if match:
        raw = match.group(1)
    else:
        parts = [p for p in re.split(r"[/\\]", uri.split("?", 1)[0]) if p and not p.endswith(":")]
        raw = parts[-1] if parts else "model"
    name = re.sub(r"[^a-z0-9-]+", "-", raw.lower()).strip("-")
    return name or "model"


@dataclass(frozen=True)
class Settings:
    model_uri: str
    models_dir: Path = Path("/mnt/models")
    env_dir: Path = Path("/mnt/env")
    name: str = ""
    backend: Literal["auto", "mlserver", "mlflow"] = "auto"
    grpc: bool = False
    cache_dir: Path | None = None
    cache_max_bytes: int | None = None
    serve_from_cache: bool = False
    installer: Literal["uv", "pip"] = "uv"
    index_url: str | None = None
    extra_index_url: tuple[str, ...] = ()
    extra_requirement: tuple[str, ...] = ()
    constraint: tuple[str, ...] = ()
    python_policy: Literal["warn", "strict"] = "warn"
    allow: frozenset[str] = field(default_factory=frozenset)
    python: str = field(default_factory=_default_python)
    slim: bool = False
    verify: bool = True
    max_batch_size: int = 0
    max_batch_time: float = 0.0
    fetch_retries: int = 4
    log_format: Literal["text", "json"] = "text"
    log_level: str = "info"

    @property
    def model_dir(self) -> Path:
        """Where the model's artifacts land (MLmodel directly inside)."""
        return self.models_dir / "model"

    @property
    def venv_dir(self) -> Path:
        return self.env_dir / "venv"

    @property
    def lock_file(self) -> Path:
        return self.env_dir / "requirements.lock"

    @property
    def report_file(self) -> Path:
        return self.env_dir / "report.json"

    @property
    def server_lib(self) -> Path:
        """The mlflow backend's V2 server package is copied here (put on PYTHONPATH at start, not installed)."""
        return self.env_dir / "lib"

    @property
    def model_settings_file(self) -> Path:
        return self.models_dir / "model-settings.json"

    @classmethod
    def from_options(cls, **options: Any) -> Settings:
        """Build from click's keyword arguments; unknown keys (subcommand-only options) are ignored."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in options.items() if k in known and v is not None}
        uri = (values.get("model_uri") or "").strip()
        if not uri:
            raise ConfigError("no model URI given", "pass --model-uri or set MLFLOW_KSERVE_MODEL_URI")
        values["model_uri"] = uri
        for key in ("models_dir", "env_dir", "cache_dir"):
            if key in values:
                values[key] = Path(values[key]).absolute()
        for key in ("extra_index_url", "extra_requirement", "constraint"):
            values[key] = tuple(v.strip() for v in values.get(key, ()) if v and v.strip())
        values["allow"] = frozenset(values.get("allow", ()))
        if values.get("serve_from_cache") and values.get("cache_dir") is None:
            raise ConfigError(
                "--serve-from-cache without a cache", "pass --cache-dir (chart: cache.enabled), or drop the flag"
            )
        values["name"] = values.get("name") or default_model_name(uri)
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", values["name"]):
            raise ConfigError(
                f"invalid model name {values['name']!r}",
                "use letters, digits, '.', '_' and '-' in --name / MLFLOW_KSERVE_NAME",
            )
        return cls(**values)
