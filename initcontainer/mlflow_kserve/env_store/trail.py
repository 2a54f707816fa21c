"""What the store did during one init: the one line each outcome logs, and report.json's ``store`` section."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mlflow_kserve.env_store.key import StoreKey
from mlflow_kserve.env_store.store import Manifest, Published, Restored, StoreFault
from mlflow_kserve.logs import get_logger

log = get_logger()


@dataclass
class StoreTrail:
    location: str  # the store URI, redacted
    key: StoreKey | None = None
    lookup: str = "not tried"  # hit | miss | skipped | a StoreFault kind
    detail: str | None = None
    build: str | None = None
    archive_bytes: int | None = None
    parts: int | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    published: str | None = None  # the build published, if any
    publish_error: str | None = None

    def skipped(self, reason: str) -> None:
        self.lookup, self.detail = "skipped", reason
        log.info("env store: not used for this model (%s); building as without a store", reason,
                 extra={"step": "store", "store": "skipped"})  # fmt: skip

    def fault(self, fault: StoreFault) -> None:
        """The one line a read that gives no environment logs; the pipeline builds next."""
        self.lookup, self.detail = fault.kind, fault.detail
        if fault.kind == "miss":
            log.info("env store %s: %s; building it", self.location, fault.detail,
                     extra={"step": "store", "store": fault.kind})  # fmt: skip
            return
        log.warning("env store %s: %s (%s); building the environment instead", self.location, fault.kind, fault.detail,
                    extra={"step": "store", "store": fault.kind})  # fmt: skip

    def hit(self, manifest: Manifest, restored: Restored | None) -> None:
        self.lookup, self.build = "hit", manifest.build
        if restored is None:  # the local cache had the same environment: nothing downloaded
            log.info("env store entry %s found; its environment is in the local cache already", self._short(),
                     extra={"step": "store", "store": "hit"})  # fmt: skip
            return
        self.archive_bytes, self.seconds = restored.archive_bytes, dict(restored.seconds)
        self.parts = restored.parts
        log.info(
            "environment from the env store (key %s, build %s): %.0f MB archive in %d parts, %d at once, "
            "downloaded in %.1fs and unpacked in %.1fs as it arrived", self._short(), manifest.build,
            restored.archive_bytes / 1e6, restored.parts, restored.workers, restored.seconds.get("download", 0),
            restored.seconds.get("unpack", 0), extra={"step": "store", "store": "hit", **restored.seconds},
        )  # fmt: skip

    def publish_done(self, published: Published) -> None:
        self.published = published.build
        self.seconds.update({f"publish_{k}": v for k, v in published.seconds.items()})
        log.info(
            "published the environment to the env store %s (key %s, build %s): %.0f MB archive, pack %.1fs, "
            "upload %.1fs", self.location, self._short(), published.build, published.archive_bytes / 1e6,
            published.seconds.get("pack", 0), published.seconds.get("upload", 0), extra={"step": "publish"},
        )  # fmt: skip

    def publish_failed(self, fault: StoreFault) -> None:
        self.publish_error = f"{fault.kind}: {fault.detail}"
        log.warning("env store %s: not published (%s)", self.location, self.publish_error, extra={"step": "publish"})

    def as_dict(self) -> dict[str, Any]:
        return {
            "uri": self.location,
            "key": self.key.digest if self.key else None,
            "lookup": self.lookup,
            "detail": self.detail,
            "build": self.build,
            "archive_bytes": self.archive_bytes,
            "parts": self.parts,
            "seconds": self.seconds,
            "published": self.published,
            "publish_error": self.publish_error,
        }

    def _short(self) -> str:
        return self.key.short if self.key else "-"
