"""Seconds per test module from a pytest JUnit XML file (setup, call and teardown of each test), the modules named
first, then the rest slowest first: how a phase's time splits, e.g. the release test's part of ci/test.sh's
e2e-tests. Sums of durations, so with several xdist workers they add up to more than the phase's wall time.

    python ci/module_seconds.py REPORT.xml [tests/test_x.py ...]
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path


def module_seconds(report: Path) -> tuple[Counter[str], Counter[str]]:
    seconds: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    for case in ET.parse(report).getroot().iter("testcase"):
        module = case.get("classname", "").replace(".", "/") + ".py"
        seconds[module] += float(case.get("time") or 0)
        counts[module] += 1
    return seconds, counts


def main(argv: list[str]) -> int:
    if not argv or not Path(argv[0]).is_file():
        print("no JUnit report to read", file=sys.stderr)
        return 0
    seconds, counts = module_seconds(Path(argv[0]))
    named = [m for m in argv[1:] if m in seconds]
    rest = [m for m, _ in seconds.most_common() if m not in named]
    print("module seconds (summed over the workers):")
    for module in [*named, *rest]:
        print(f"  {seconds[module]:8.1f}s  {counts[module]:4d} tests  {module}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
