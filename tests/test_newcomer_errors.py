"""The errors a newcomer meets first, each through the CLI with its exit code and its one line: the cause as it
is, a fix that is true, and commands that exist. None of these needs the network or an install."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from support.cli import MLFLOW_KSERVE, last_error, mlflow_kserve
from support.services import free_port

ROOT = Path(__file__).resolve().parents[1]
# The environment of a shell without MLflow settings: no tracking server, nothing of the test session's.
BARE = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"}


def _listening(port: int) -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", port))
    sock.listen()
    return sock


@pytest.mark.parametrize(("flag", "extra"), [("--port", []), ("--grpc-port", ["--backend", "mlserver"])])
def test_run_on_a_port_in_use_exits_2_before_anything_is_fetched(flag: str, extra: list[str], tmp_path: Path) -> None:
    ports = {"--port": free_port(), "--grpc-port": free_port(), "--metrics-port": free_port()}
    with _listening(ports[flag]):
        args = ["run", "--model-uri", str(tmp_path / "model"), "--work-dir", str(tmp_path / "work"), *extra]
        proc = mlflow_kserve([*args, *(f"{k}={v}" for k, v in ports.items())], {**BARE, "HOME": str(tmp_path)})
    assert proc.returncode == 2, proc.stderr
    assert last_error(proc) == (
        f"mlflow-kserve error: port {ports[flag]} ({flag}) is already in use on 127.0.0.1; fix: stop what listens "
        f"there, or pass another port: {flag} <port>"
    )
    assert not (tmp_path / "work").exists(), "nothing fetched, nothing installed"
    assert "Traceback" not in proc.stderr


def test_a_folder_above_the_model_says_so_and_names_the_model_inside(tmp_path: Path) -> None:
    """The demo's work dir, one level above its model: the run/ folder holds a venv whose python links out of it
    (that link used to be the error)."""
    demo = tmp_path / "demo"
    (demo / "iris-model").mkdir(parents=True)
    (demo / "iris-model" / "MLmodel").write_text("flavors: {}\n")
    venv_bin = demo / "run" / "models" / "0123" / "env" / "venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "python").symlink_to(sys.executable)
    (demo / "notes.txt").write_text("x")
    proc = mlflow_kserve(["check", "--model-uri", str(demo)], {**BARE, "TMPDIR": str(tmp_path)})
    assert proc.returncode == 4, proc.stderr
    assert last_error(proc) == (
        f"mlflow-kserve error: no MLmodel file in {demo} (found: iris-model/, notes.txt, run/; a model inside it: "
        f"iris-model/); fix: point the model URI at the directory that holds MLmodel: {demo}/iris-model"
    )


def test_a_local_path_not_found_is_explained_as_a_path(tmp_path: Path) -> None:
    proc = mlflow_kserve(["check", "--model-uri", "./no-such-model"], {**BARE, "TMPDIR": str(tmp_path)})
    assert proc.returncode == 3, proc.stderr
    message = last_error(proc)
    assert message.startswith("mlflow-kserve error: no such file or directory: ") and "/no-such-model" in message
    assert "(the model URI is a local path); fix: check the path" in message
    assert "bucket" not in message and "key" not in message


@pytest.mark.parametrize(
    "args",
    [
        ["resolve", "--model-uri", "models:/fraud@champion"],
        ["resolve", "--model-uri", "models:/fraud/3", "--json"],
        ["check", "--model-uri", "models:/fraud@champion"],
        ["check", "--model-uri", "runs:/0123456789abcdef/model"],
    ],
    ids=["resolve-alias", "resolve-version", "check-models", "check-runs"],
)
def test_a_registry_uri_without_a_tracking_server_exits_2_and_writes_nothing(args: list[str], tmp_path: Path) -> None:
    """MLflow's default tracking URI is a SQLite file it creates in the current directory: never reached."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    proc = subprocess.run([MLFLOW_KSERVE, *args], env={**BARE, "TMPDIR": str(tmp_path)}, cwd=cwd,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    message = last_error(proc)
    assert "is looked up on an MLflow tracking server, and MLFLOW_TRACKING_URI is not set" in message
    assert "fix: set MLFLOW_TRACKING_URI to your MLflow server" in message
    assert list(cwd.iterdir()) == [], "no mlflow.db, nothing"
    assert proc.stdout == ""


def test_help_says_run_serves_with_the_chosen_backend() -> None:
    proc = subprocess.run([MLFLOW_KSERVE, "--help"], capture_output=True, text=True, timeout=60, env=BARE)
    line = next(ln for ln in proc.stdout.splitlines() if ln.strip().startswith("run "))
    assert "with the chosen backend" in line and "MLServer" not in line, line


# `mlflow-kserve <command>` and `mlflow <group> <command>` as the product and its docs tell users to type them.
OURS = re.compile(r"`mlflow-kserve ([a-z][a-z-]*)(?=[\s`])")
MLFLOWS = re.compile(r"`mlflow ([a-z][a-z-]*)(?: ([a-z][a-z-]*))?(?![a-z-])")


def test_every_command_a_hint_or_page_names_exists() -> None:
    import click
    from mlflow.cli import cli as mlflow_cli
    from mlflow_kserve.cli import cli

    sources = [*(ROOT / "initcontainer").rglob("*.py"), ROOT / "README.md", *(ROOT / "docs").rglob("*.md"),
               *(ROOT / "charts").rglob("*.txt"), ROOT / "server-image" / "entrypoint.sh"]  # fmt: skip
    missing = []
    for path in sources:
        text = path.read_text()
        for name in OURS.findall(text):
            if name not in cli.commands:
                missing.append(f"{path.relative_to(ROOT)}: mlflow-kserve {name}")
        for group, name in MLFLOWS.findall(text):
            command = mlflow_cli.commands.get(group)
            if command is None or (name and isinstance(command, click.Group) and name not in command.commands):
                missing.append(f"{path.relative_to(ROOT)}: mlflow {group} {name}".rstrip())
    assert missing == []
