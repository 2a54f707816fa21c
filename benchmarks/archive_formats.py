"""Archive formats for the environment store, measured on a real venv (not a test): size, seconds to pack, seconds
to check (sha256) and unpack, each the median of --runs, in one run. Python's tarfile with no compression and with
gzip levels 1 and 6 (the standard library's best before Python 3.14, which adds zstd), unpacked by tarfile or GNU
tar; and what the store does (env_store/archive.py): tarfile through `zstandard` (level 3, every core), unpacked by
GNU tar beside the decompression.

    .venv/bin/python benchmarks/archive_formats.py VENV_DIR [--runs 3]
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "initcontainer"))
from mlflow_kserve.env_store import archive as store_archive


def _python_pack(level: int | None) -> Callable[[Path, Path], None]:
    def pack(venv: Path, dest: Path) -> None:
        mode = "w" if level is None else "w:gz"
        options = {} if level is None else {"compresslevel": level}
        with tarfile.open(dest, mode, format=tarfile.PAX_FORMAT, **options) as tar:  # type: ignore[call-overload]
            tar.add(str(venv), arcname=".")

    return pack


def _store_pack(venv: Path, dest: Path) -> None:
    """The store's archive in one part (env_store/archive.py; a restore unpacks up to four side by side)."""
    with tempfile.TemporaryDirectory(dir=dest.parent) as folder:
        (part,), _ = store_archive.pack(venv, Path(folder), parts=1)
        (Path(folder) / part.name).rename(dest)


def _python_unpack(compressed: bool) -> Callable[[Path, Path], None]:
    def run(path: Path, dest: Path) -> None:
        dest.mkdir()
        with tarfile.open(path, "r|gz" if compressed else "r|") as tar:
            tar.extractall(dest, filter="tar")

    return run


def _gnu_gzip_unpack(archive: Path, dest: Path) -> None:
    dest.mkdir()
    subprocess.run(["tar", "-C", str(dest), "-xzf", str(archive)], check=True)


def _zstd_pack(venv: Path, dest: Path) -> None:
    subprocess.run(f"tar -C '{venv}' -cf - . | zstd -q -3 -T1 -o '{dest}'", shell=True, check=True)


def _zstd_unpack(archive: Path, dest: Path) -> None:
    dest.mkdir()
    subprocess.run(f"zstd -q -d -c '{archive}' | tar -C '{dest}' -xf -", shell=True, check=True)


def _sha256(path: Path) -> None:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)


def _timed(action: Callable[[], None]) -> float:
    started = time.monotonic()
    action()
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("venv", type=Path)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    venv = args.venv.resolve()
    formats = {
        "tar (no compression), Python tarfile": (_python_pack(None), _python_unpack(False), "tar"),
        "tar + gzip level 1, Python tarfile + zlib": (_python_pack(1), _python_unpack(True), "tar.gz"),
        "tar + gzip level 6, Python tarfile + zlib": (_python_pack(6), _python_unpack(True), "tar.gz"),
    }
    formats["tar + gzip level 1, GNU tar + gzip (unpack only; packed by Python)"] = (
        _python_pack(1), _gnu_gzip_unpack, "tar.gz")  # fmt: skip
    formats["tar + zstd level 3 (the store's, in one part: tarfile + zstandard on every core; GNU tar unpacks)"] = (
        _store_pack, store_archive.unpack, "tar.zst")  # fmt: skip
    if shutil.which("zstd"):
        formats["tar + zstd level 3, GNU tar + zstd binary"] = (_zstd_pack, _zstd_unpack, "tar.zst")
    size = int(subprocess.run(["du", "-sb", str(venv)], capture_output=True, text=True).stdout.split()[0])
    files = sum(1 for _ in venv.rglob("*"))
    print(f"venv: {size / 1e6:.0f} MB, {files} entries; medians of {args.runs} runs\n")
    print("| format | archive MB | pack s | sha256 s | unpack s | check + unpack s |")
    print("|---|---|---|---|---|---|")
    for label, (pack, unpack_to, suffix) in formats.items():
        packs, checks, unpacks, sizes = [], [], [], []
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory(dir=venv.parent) as tmp:
                archive = Path(tmp) / f"venv.{suffix}"
                packs.append(_timed(lambda: pack(venv, archive)))  # noqa: B023
                sizes.append(archive.stat().st_size)
                checks.append(_timed(lambda: _sha256(archive)))  # noqa: B023
                unpacks.append(_timed(lambda: unpack_to(archive, Path(tmp) / "out")))  # noqa: B023
        pack_s, check_s, unpack_s = (statistics.median(v) for v in (packs, checks, unpacks))
        print(f"| {label} | {statistics.median(sizes) / 1e6:.0f} | {pack_s:.1f} | {check_s:.2f} | {unpack_s:.1f} | "
              f"{check_s + unpack_s:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
