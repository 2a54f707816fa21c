"""A venv as a few archives ("parts") that unpack side by side: tar (PAX, so mtimes keep their fractions)
compressed with zstd (level 3, a content checksum in the frame), written by Python's tarfile through ``zstandard``
and unpacked by GNU tar as the bytes arrive.

Why zstd: measured on the 773 MB, 18,767-file iris venv (benchmarks/archive_formats.py; the numbers are in
docs/env-store.md): against tar + gzip level 1 (the best the standard library has before Python 3.14), zstd is
17% smaller, packs with about a third of the CPU (it compresses on every core) and decompresses with about a fifth.
GNU tar (in every Debian image, the base of ours) writes the files in a process of its own, beside the
decompression, and needs nothing of the interpreter: the base images' Python may predate tarfile's extraction
filters (Debian 12's 3.11.2 has none).

Why parts: what a restore waits for is the file system creating ~18,000 files (the bytes are the cheap half:
one 700 MB file writes in 0.5 s where the venv's files take 2 s on the same disk). A venv is split, in the order
of a sorted walk (so neighbours compress together), into up to ``PARTS`` parts of about the same cost (bytes, plus
``FILE_COST`` per file); each part holds every directory of the venv and its share of the files, so it unpacks
on its own, into the same folder, beside the others. A tar sets a folder's mode and mtime when it ends, but a
folder another tar made first it sets as it meets it, and the files written after change the mtime again: so a
last, small archive of the folders alone (``FOLDERS_NAME``) is unpacked after every part, and the folders come out
as they were packed (a venv's folders are the installer's, writable by their owner: no tar finds a folder another
made read-only). A small venv is one part (``PART_MIN``).

What the archive keeps: every file's bytes, mode and mtime (bytecode is validated by its source's mtime and size,
so the venv's .pyc files stay valid), symbolic links as links (``bin/python`` points at the base interpreter, which
the reading image has at the same path), hard links whose files fall in the same part (across parts, a copy). What
it drops: owners (the reader's user owns what it unpacks).

Unpacking is guarded like any archive from elsewhere, by GNU tar's defaults: a member whose name holds ``..`` is
refused, a leading ``/`` is stripped, and a link to an absolute place or through ``..`` is created only after every
other member of its part (a placeholder meanwhile), so no member is written through it; as the pod's unprivileged
user it can create no device and set no owner. The zstd frame's checksum is verified at its end, so an archive a
broken build wrote (whose sha256 then matches its manifest) does not unpack. Unpacking writes into a new folder
only; the caller checks every part's sha256 and renames the folder into place when all are whole, or discards it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

PARTS = 4  # the most a venv is split into: what a reader's cores can unpack side by side
FILE_COST = 16 << 10  # a file costs a reader about as much as this many bytes (measured: see the docstring)
PART_MIN = 32 << 20  # a part smaller than this (in cost) is not worth a stream of its own
LEVEL = 3
CHUNK = 1 << 20
PIPE_BYTES = 1 << 20  # tar's stdin: fewer, larger reads
FORMAT_NOTES = f"tar+zstd (level {LEVEL}, checksummed), in up to {PARTS} parts, then the folders"
FOLDERS_NAME = "venv.folders.tar.zst"


def part_name(index: int) -> str:
    return f"venv.{index}.tar.zst"


@dataclass(frozen=True)
class Packed:
    name: str  # part_name(i)
    sha256: str
    bytes: int  # of the archive
    files: int  # members


class UnpackError(Exception):
    """The archive does not unpack: a damaged stream, or a member tar refuses."""


class Readable(Protocol):
    def read(self, size: int, /) -> bytes: ...


def pack(venv: Path, folder: Path, parts: int = PARTS, part_min: int | None = None) -> tuple[list[Packed], Packed]:
    """Archive the contents of ``venv`` (a folder, or a link to one) into ``folder/venv.<i>.tar.zst`` (the parts,
    in order) and ``folder/venv.folders.tar.zst``, hashing as it writes."""
    source = venv.resolve()
    folders, shares = _split(source, parts, PART_MIN if part_min is None else part_min)
    packed = [_pack_part(source, folders, share, folder / part_name(index)) for index, share in enumerate(shares)]
    return packed, _pack_part(source, folders, [], folder / FOLDERS_NAME)


def unpack(archive: Path, dest: Path) -> None:
    """Unpack the archive file ``archive`` into the new folder ``dest`` (see ``unpack_stream``)."""
    dest.mkdir()
    with archive.open("rb") as raw:
        unpack_stream(raw, dest)


def unpack_stream(source: Readable, dest: Path) -> None:
    """Unpack one part, read from ``source`` as it arrives, into the existing folder ``dest``. Raises
    UnpackError naming the cause when the stream is damaged or tar refuses a member (the caller discards ``dest``);
    OSError (e.g. a full disk) as it is; whatever ``source.read`` raises, after stopping tar."""
    import zstandard

    tar_binary = shutil.which("tar")
    if tar_binary is None:  # pragma: no cover - Debian images have tar (an essential package)
        raise UnpackError("no tar program on PATH")
    with tempfile.TemporaryFile() as errors:
        command = [tar_binary, "-x", "-p", "--no-same-owner", "-C", str(dest), "-f", "-"]
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=errors)
        assert proc.stdin is not None
        with contextlib.suppress(OSError):  # Linux: a larger pipe, fewer wake-ups of tar
            fcntl.fcntl(proc.stdin.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        damaged, stopped = None, False
        try:
            with zstandard.ZstdDecompressor().stream_reader(source, read_size=CHUNK, closefd=False) as data:  # type: ignore[arg-type]
                while chunk := data.read(CHUNK):
                    proc.stdin.write(chunk)
        except zstandard.ZstdError as exc:
            damaged = f"zstd: {exc}"
        except BrokenPipeError:
            pass  # tar stopped reading: its exit code and message say why
        except BaseException:
            stopped = True
            raise
        finally:
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.close()
            if damaged or stopped:
                proc.kill()
            code = proc.wait()
        errors.seek(0)
        told = [line for line in errors.read().decode(errors="replace").splitlines() if line.strip()]
    if damaged:
        raise UnpackError(damaged)
    if code != 0:
        raise UnpackError(f"tar exited {code}: {told[0][:300] if told else 'no message'}")


# -- packing ---------------------------------------------------------------------------------------------------
def _split(source: Path, parts: int, part_min: int) -> tuple[list[str], list[list[str]]]:
    """Every directory (relative, "." first, parents before children) and the other entries cut, in walk order,
    into at most ``parts`` runs of about equal cost."""
    folders: list[str] = ["."]
    entries: list[tuple[str, int]] = []
    for folder, dirs, files in os.walk(source):
        dirs.sort()
        here = Path(folder)
        for name in [*dirs]:  # a link to a folder is an entry, not a folder to walk
            if (here / name).is_symlink():
                dirs.remove(name)
                files.append(name)
        for name in dirs:
            folders.append(str((here / name).relative_to(source)))
        for name in sorted(files):
            info = (here / name).lstat()
            size = info.st_size if stat.S_ISREG(info.st_mode) else 0
            entries.append((str((here / name).relative_to(source)), size + FILE_COST))
    total = sum(cost for _, cost in entries)
    count = max(1, min(parts, total // max(part_min, 1)))
    shares: list[list[str]] = [[] for _ in range(count)]
    done = 0
    for rel, cost in entries:
        shares[min(count - 1, done * count // max(total, 1))].append(rel)
        done += cost
    return folders, shares


def _pack_part(source: Path, folders: list[str], share: list[str], dest: Path) -> Packed:
    import zstandard

    count = 0

    def member(info: tarfile.TarInfo) -> tarfile.TarInfo:
        nonlocal count
        count += 1
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    compressor = zstandard.ZstdCompressor(level=LEVEL, threads=-1, write_checksum=True)
    with dest.open("wb") as raw:
        out = _HashingWriter(raw)
        with compressor.stream_writer(out, closefd=False) as zst:  # type: ignore[arg-type]
            with tarfile.open(fileobj=zst, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
                for rel in [*folders, *share]:
                    arcname = "." if rel == "." else f"./{rel}"
                    tar.add(str(source / rel), arcname=arcname, recursive=False, filter=member)
    return Packed(dest.name, out.digest.hexdigest(), out.size, count)


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
