"""Compare venvs file for file: a digest listing (path -> kind, mode and sha256 of the bytes or the link's target)."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path


def listing(root: Path) -> dict[str, tuple[str, int, str]]:
    """Every entry under ``root`` (a folder, or a link to one), by relative path: ("file", mode, sha256),
    ("link", 0, target) or ("dir", mode, "")."""
    root = root.resolve()
    out: dict[str, tuple[str, int, str]] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            rel = str(path.relative_to(root))
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                out[rel] = ("link", 0, os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                out[rel] = ("dir", stat.S_IMODE(info.st_mode), "")
            else:
                out[rel] = ("file", stat.S_IMODE(info.st_mode), hashlib.sha256(path.read_bytes()).hexdigest())
    return out


def differences(a: dict[str, tuple[str, int, str]], b: dict[str, tuple[str, int, str]]) -> list[str]:
    """Paths whose entries differ (or that only one side has), sorted; empty when identical."""
    return sorted(path for path in set(a) | set(b) if a.get(path) != b.get(path))
