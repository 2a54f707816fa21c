"""Give the memory a large request used back to the system (glibc only; with another C library, nothing is done).

A large V2 body (tens of MB of JSON, its parsed lists, the arrays and the answer) is freed once answered, but glibc
keeps freed memory in the arena of the thread that allocated it. Measured (wine model, three 20 MB requests, server
RSS after them; MLServer, which allocates in its main thread, 329 MB): as it was, 375 MB; with ``malloc_trim(0)``
after each large request, 333 MB; with that and a single arena for every thread (``mallopt(M_ARENA_MAX, 1)``, set
before any thread starts), 289 MB. One arena costs nothing here: the Python threads that allocate hold the GIL.
``malloc_trim`` takes a few milliseconds, so it runs only after a large request, in the inference thread."""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import lru_cache
from typing import Any

M_ARENA_MAX = -8  # glibc's malloc.h


@lru_cache(maxsize=1)
def _libc() -> Any:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None


def one_arena() -> None:
    """Every thread allocates from the main arena (call before threads start)."""
    libc = _libc()
    if libc is not None:
        libc.mallopt(M_ARENA_MAX, 1)


def release() -> None:
    """Return free heap pages to the system."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
