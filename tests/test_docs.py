"""README.md tells the truth about the CLI: its options table is generated from the click definitions."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_readme_cli_table_is_in_sync() -> None:
    proc = subprocess.run([sys.executable, "ci/gen_cli_docs.py", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_the_repository_reads_nothing_outside_its_tree() -> None:
    """A clone on a new machine has nothing beside it: no file may name a folder next to the repository."""
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    needles = ("../" + "shared/", '"' + 'shared" /')  # spelled apart so this file does not match itself
    offenders = []
    for name in tracked.split():
        path = ROOT / name
        if path.suffix in (".yaml", ".json", ".tar", ".gz") and path.stat().st_size > 100_000:
            continue  # vendored data
        text = path.read_text(errors="replace")
        if any(needle in text for needle in needles):
            offenders.append(name)
    assert offenders == [], offenders


@pytest.mark.parametrize(
    ("folder", "table", "pattern"), [("crds", "SOURCES", "*.yaml"), ("knative", "KNATIVE_SOURCES", "*.go")]
)
def test_every_vendored_file_names_its_upstream(folder: str, table: str, pattern: str) -> None:
    sys.path.insert(0, str(ROOT / "ci"))
    try:
        import refresh_crds
    finally:
        sys.path.remove(str(ROOT / "ci"))
    sources = getattr(refresh_crds, table)
    vendored = {p.name for p in (ROOT / "ci" / folder).glob(pattern)}
    readme = (ROOT / "ci" / folder / "README.md").read_text()
    assert vendored == set(sources)
    for name, (repo, tag, path, _kind) in sources.items():
        assert f"| {name} | {repo} | {tag} | {path}" in readme, name
