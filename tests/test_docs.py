"""The documentation tells the truth: the generated reference is current, the site builds with mkdocs --strict,
the README is short and its links resolve, and every command block in the README and docs/ is run by a test (this
file runs those marked `<!-- test: run -->`; a marker may name the test or CI script that runs them instead) or
says why nothing can run it. The marker grammar is in docs/development.md."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
COMMAND_LANGUAGES = {"bash", "sh", "shell", "console"}
MARKER = re.compile(r"^<!-- test: (?P<how>.+) -->$")
FENCE = re.compile(r"^```(?P<lang>[\w-]*)\s*$")
LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    lang: str
    how: str | None  # the marker on the line before the fence
    code: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def code_blocks(page: Path) -> list[Block]:
    lines = page.read_text().splitlines()
    blocks, index = [], 0
    while index < len(lines):
        fence = FENCE.match(lines[index])
        if not fence:
            index += 1
            continue
        end = next(i for i in range(index + 1, len(lines)) if lines[i].startswith("```"))
        marker = MARKER.match(lines[index - 1]) if index else None
        blocks.append(
            Block(page, index + 1, fence.group("lang"), marker.group("how") if marker else None,
                  "\n".join(lines[index + 1 : end]) + "\n")
        )  # fmt: skip
        index = end + 1
    return blocks


COMMANDS = [b for page in PAGES for b in code_blocks(page) if b.lang in COMMAND_LANGUAGES]


def _runnable(e2e: bool) -> list[Block]:
    return [b for b in COMMANDS if b.how == ("run e2e" if e2e else "run")]


def test_the_cli_reference_is_current() -> None:
    proc = subprocess.run([sys.executable, "ci/gen_cli_docs.py", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_the_site_builds_with_strict_checks(tmp_path: Path) -> None:
    """A dead link or anchor, a page left out of the nav, a page the nav names but docs/ lacks: each fails."""
    mkdocs = Path(sys.executable).with_name("mkdocs")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # mkdocs-material's banner about its successor
    proc = subprocess.run([mkdocs, "build", "--strict", "--site-dir", tmp_path / "site"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (tmp_path / "site" / "reference" / "cli" / "index.html").is_file()


def test_the_readme_leads_in_under_250_lines_and_its_links_resolve() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) < 250
    assert "make demo" in readme and "make test" in readme, "the two commands"
    for target in LINK.findall(readme):
        if target.startswith(("http://", "https://", "#")):
            continue
        path, _, anchor = target.partition("#")
        assert (ROOT / path).exists(), target
        if anchor:
            assert anchor in _anchors(ROOT / path), target


def test_the_readme_and_the_deploy_page_say_the_same_about_the_cluster() -> None:
    def section(text: str) -> str:
        return text.split("## What the cluster needs", 1)[1].split("\n## ", 1)[0].strip()

    readme = section((ROOT / "README.md").read_text()).replace("](docs/", "](")
    assert readme == section((ROOT / "docs" / "deploy.md").read_text())


def test_ci_runs_the_readme_test_command() -> None:
    assert "make test" in (ROOT / "README.md").read_text()
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_every_command_block_says_how_it_is_tested() -> None:
    """None is silently skipped: each names how it is run, or why it cannot be."""
    assert COMMANDS, "the parser found no command blocks"
    problems = []
    for block in COMMANDS:
        how = block.how
        if how is None:
            problems.append(f"{block.where}: no <!-- test: ... --> marker on the line before the block")
        elif how in ("run", "run e2e"):
            continue
        elif how.startswith("no, "):
            if len(how) < 20:
                problems.append(f"{block.where}: say why no test can run it")
        else:
            for target in (t.strip() for t in how.split(";")):
                path, _, name = target.partition("::")
                if not (ROOT / path).is_file():
                    problems.append(f"{block.where}: {path} does not exist")
                elif name and not re.search(rf"^def {re.escape(name)}\(", (ROOT / path).read_text(), re.M):
                    problems.append(f"{block.where}: {path} has no test {name}")
    assert problems == [], "\n".join(problems)
    assert _runnable(e2e=False) and _runnable(e2e=True), "both kinds of runnable blocks exist"


@pytest.mark.parametrize("block", _runnable(e2e=False), ids=lambda b: b.where)
def test_documented_commands_run(block: Block, tmp_path: Path) -> None:
    proc = _run(block, tmp_path, dict(os.environ))
    assert proc.returncode == 0, f"{block.where}:\n{block.code}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"


@pytest.mark.e2e
@pytest.mark.parametrize("block", _runnable(e2e=True), ids=lambda b: b.where)
def test_documented_commands_that_install_run(block: Block, tmp_path: Path, shared_cache: Path) -> None:
    env = {**os.environ, "MLFLOW_KSERVE_CACHE_DIR": str(shared_cache)}
    proc = _run(block, tmp_path, env)
    assert proc.returncode == 0, f"{block.where}:\n{block.code}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"


def test_the_repository_reads_nothing_outside_its_tree() -> None:
    """A clone on a new machine has nothing beside it: no file may name a folder next to the repository, nor a
    design document that is not in it (docs/architecture.md is the project's own)."""
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    needles = ("../" + "shared/", '"' + 'shared" /', "DESIGN" + ".md")  # spelled apart: this file must not match
    offenders = []
    for name in tracked.split():
        path = ROOT / name
        if not path.is_file() or (path.suffix in (".yaml", ".json", ".tar", ".gz") and path.stat().st_size > 100_000):
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


def _run(block: Block, tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The block in a scratch folder that links the repository's top-level entries (and .venv, .tools): its
    relative paths (.venv/bin/..., examples/..., charts/...) work as written, and what it writes stays in the
    scratch folder."""
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for name in {line.split("/", 1)[0] for line in tracked.split()} | {".venv", ".tools"}:
        (tmp_path / name).symlink_to(ROOT / name)
    return subprocess.run(["bash", "-euo", "pipefail", "-c", block.code], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600, stdin=subprocess.DEVNULL)  # fmt: skip


def _anchors(page: Path) -> set[str]:
    """The ids mkdocs gives a page's headings (the toc extension's slugs)."""
    slugs = set()
    for line in page.read_text().splitlines():
        if line.startswith("#"):
            text = re.sub(r"[`*]", "", line.lstrip("#").strip()).lower()
            slugs.add(re.sub(r"[\s]+", "-", re.sub(r"[^\w\s-]", "", text)).strip("-"))
    return slugs
