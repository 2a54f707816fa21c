"""A store on a file system: a path or ``file:///path`` (a shared volume, or a test's folder)."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import IO


class LocalBackend:
    def __init__(self, uri: str) -> None:
        self.location = uri
        self.root = Path(uri[len("file://") :] if uri.startswith("file://") else uri)

    def read(self, name: str) -> bytes | None:
        try:
            return (self.root / name).read_bytes()
        except FileNotFoundError:
            return None

    def stream(self, name: str, offset: int = 0) -> IO[bytes]:
        handle = (self.root / name).open("rb")
        handle.seek(offset)
        return handle

    def write(self, name: str, data: bytes) -> None:
        target = self._target(name)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}")
        tmp.write_bytes(data)
        os.replace(tmp, target)  # a reader sees the old object or the new one

    def upload(self, src: Path, name: str) -> None:
        target = self._target(name)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}")
        shutil.copyfile(src, tmp)
        os.replace(tmp, target)

    def _target(self, name: str) -> Path:
        target = self.root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        return target
