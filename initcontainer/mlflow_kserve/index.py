"""Package index settings. They come only from the operator: --index-url / --extra-index-url, else the
standard PIP_* / UV_* environment; never from the model's requirement lines (see policy.py)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from mlflow_kserve.errors import redact


@dataclass(frozen=True)
class IndexConfig:
    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()  # only from model lines an operator allowed (--allow index-options)

    @classmethod
    def from_operator(
        cls,
        index_url: str | None,
        extra_index_urls: tuple[str, ...],
        environ: Mapping[str, str] | None = None,
    ) -> IndexConfig:
        """Flags win; else UV_INDEX_URL / UV_DEFAULT_INDEX / PIP_INDEX_URL (so one setting serves both
        installers); likewise for extra indexes."""
        env = os.environ if environ is None else environ
        url = index_url or env.get("UV_DEFAULT_INDEX") or env.get("UV_INDEX_URL") or env.get("PIP_INDEX_URL")
        extras = extra_index_urls or tuple(
            (env.get("UV_EXTRA_INDEX_URL") or env.get("PIP_EXTRA_INDEX_URL") or "").split()
        )
        return cls(url or None, tuple(extras))

    def with_model_options(self, index_url: str | None, extras: tuple[str, ...], links: tuple[str, ...]) -> IndexConfig:
        """Index options from the model, kept only when the operator allowed them."""
        return IndexConfig(index_url or self.index_url, (*self.extra_index_urls, *extras), links)

    def uv_args(self) -> list[str]:
        args: list[str] = []
        if self.index_url:
            args += ["--index-url", self.index_url]
        for url in self.extra_index_urls:
            args += ["--extra-index-url", url]
        for link in self.find_links:
            args += ["--find-links", link]
        return args

    def pip_args(self) -> list[str]:
        # pip-compile takes the same spelling as uv for these three options.
        return self.uv_args()

    def cache_parts(self) -> dict[str, object]:
        return {
            "index_url": redact(self.index_url or ""),
            "extra": [redact(u) for u in self.extra_index_urls],
            "find_links": list(self.find_links),
        }

    def describe(self) -> str:
        urls = [u for u in (self.index_url, *self.extra_index_urls) if u]
        return ", ".join(redact(u) for u in urls) or "default (PyPI)"
