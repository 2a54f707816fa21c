"""A venv as one archive: tar (PAX, so mtimes keep their fractions) compressed with gzip, from the standard
library.

Chosen by measurement (module ``FORMAT_NOTES``). What the archive keeps: every file's bytes, mode and mtime
(bytecode is validated by its source's mtime and size, so the venv's .pyc files stay valid), symbolic links as
links (``bin/python`` points at the base interpreter, which the reading image has at the same path), hard links
within the venv. What it drops: owners (the reader's user owns what it unpacks).

Unpacking is guarded like any archive from elsewhere: ``tarfile``'s ``tar`` filter (PEP 706: no absolute names,
nothing that lands outside the destination, also through a link unpacked before), no setuid, setgid or sticky
bits, and only files, folders and links: no devices or pipes. The permission bits are kept as they were (a venv
restored is the venv built, mode for mode). The gzip stream is read to its end, so its CRC-32 of the
uncompressed bytes is checked too: a build that wrote a broken archive (whose sha256 then matches its manifest)
is caught, as zlib alone does not notice bytes flipped in a stored block. ``unpack`` writes into a new folder
only; the caller renames it into place when it is complete, or discards it.
"""

from __future__ import annotations

import gzip
import hashlib
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

ARCHIVE_NAME = "venv.tar.gz"
COMPRESSLEVEL = 1
CHUNK = 1 << 20
FORMAT_NOTES = "tar+gzip (level 1)"


@dataclass(frozen=True)
class Packed:
    sha256: str
    bytes: int  # of the archive
    files: int  # members


class UnsafeMember(tarfile.FilterError):
    """A member that is not a file, a folder or a link."""


def pack(venv: Path, dest: Path) -> Packed:
    """Archive the contents of ``venv`` (a folder, or a link to one) into ``dest``, hashing as it writes."""
    source = venv.resolve()
    count = 0

    def member(info: tarfile.TarInfo) -> tarfile.TarInfo:
        nonlocal count
        count += 1
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    with dest.open("wb") as raw:
        out = _HashingWriter(raw)
        gz = gzip.GzipFile(fileobj=out, mode="wb", compresslevel=COMPRESSLEVEL, mtime=0)  # type: ignore[arg-type]
        with gz:
            with tarfile.open(fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                tar.add(str(source), arcname=".", filter=member)
    return Packed(out.digest.hexdigest(), out.size, count)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def unpack(archive: Path, dest: Path) -> int:
    """Unpack ``archive`` into the new folder ``dest``; returns the number of members. Raises tarfile.TarError,
    OSError or EOFError/zlib.error on an archive that does not unpack (the caller discards ``dest``)."""
    dest.mkdir()
    count = 0

    def safe(info: tarfile.TarInfo, path: str) -> tarfile.TarInfo | None:
        nonlocal count
        if not (info.isfile() or info.isdir() or info.issym() or info.islnk()):
            raise UnsafeMember(f"{info.name!r} is neither a file, a folder nor a link")
        checked = tarfile.tar_filter(info, path)
        count += 1
        mode = None if checked.mode is None else info.mode & 0o777  # the filter's checks, the build's permissions
        return checked.replace(mode=mode, uid=None, gid=None, uname=None, gname=None, deep=False)

    with gzip.open(archive, "rb") as data:
        with tarfile.open(fileobj=data, mode="r|") as tar:
            tar.extractall(dest, filter=safe)
        while data.read(CHUNK):  # to the end: gzip checks its CRC-32 and length there
            pass
    return count


class _HashingWriter:
    """A write-only file object that hashes and counts what passes through to ``raw``."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self.raw.write(data)

    def flush(self) -> None:
        self.raw.flush()
