"""Where a REST inference runs: on the event loop itself, or in the one inference thread.

Measured on a tabular model (benchmarks/speed.py, 2 cores, 16 concurrent clients): Starlette's thread pool
(``run_in_threadpool``, up to 40 threads taking turns at the GIL) gave 555 req/s and a p99 of 153 ms; one
inference thread, 704 req/s and 37 ms; the event loop itself (no thread hop, first come first served, as MLServer
runs its models), 788 req/s and 26 ms. But a prediction on the event loop holds up everything else, the health
probes included: a slow model would fail its probes. So an inference runs on the loop only while it is quick: its
body is small and the last ones took at most QUICK; after one that did not, the next COOL_DOWN inferences go to
the inference thread (where the loop keeps answering) and are timed there. The first one goes to the thread."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

QUICK = 0.01  # seconds: an inference this quick may run on the event loop
SMALL = 64 * 1024  # bytes: a larger body is decoded in the thread
COOL_DOWN = 100  # inferences in the thread after a slow one


class Placement:
    def __init__(self) -> None:
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="infer")  # its thread starts on use
        self._cooling = 1  # unknown until one is timed

    def inline(self, body_bytes: int) -> bool:
        return body_bytes <= SMALL and self._cooling == 0

    def took(self, seconds: float, body_bytes: int) -> None:
        """Record how long an inference of a ``body_bytes`` body took (wherever it ran)."""
        if seconds > QUICK and body_bytes <= SMALL:
            self._cooling = COOL_DOWN
        elif self._cooling:
            self._cooling -= 1

    def close(self) -> None:
        self.executor.shutdown(wait=False)
