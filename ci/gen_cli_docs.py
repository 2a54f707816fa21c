"""Fill the CLI reference (docs/reference/cli.md) from the click definitions, the single source of truth: the
commands with their help, and every option of init, check, run and build with its env var, default and help.

python ci/gen_cli_docs.py          # rewrite docs/reference/cli.md
python ci/gen_cli_docs.py --check  # exit 1 when it is stale (tests/test_docs.py runs this)
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from mlflow_kserve import cli

PAGE = Path(__file__).resolve().parent.parent / "docs" / "reference" / "cli.md"
COMMANDS = ("cli-commands", ["| command | what it does |", "|---|---|"])
OPTIONS = ("cli-options", ["| flag | env | default | meaning |", "|---|---|---|---|"])
OPTION_COMMANDS = ("init", "check", "run", "build")


def command_rows() -> list[str]:
    rows = []
    for name, command in cli.cli.commands.items():
        text = " ".join((command.help or "").split("\n\n")[0].split()).replace("|", "\\|").replace("<", "&lt;")
        rows.append(f"| `mlflow-kserve {name}` | {text} |")
    return rows


def option_rows() -> list[str]:
    """One row per option; an option that differs between commands (check's --models-dir defaults to a temporary
    directory, init's to /mnt/models) gets a row per variant, each naming its commands."""
    seen: dict[tuple[str, str, str], tuple[click.Option, list[str]]] = {}
    for name in OPTION_COMMANDS:
        command = cli.cli.commands[name]
        for param in command.params:
            if isinstance(param, click.Option) and param.name != "help":
                key = (param.name or "", repr(param.default), param.help or "")
                seen.setdefault(key, (param, []))[1].append(name)
    out = []
    for param, commands in seen.values():
        flag = " / ".join(param.opts + param.secondary_opts)
        default = "" if param.default in (None, (), False) or param.multiple else f"`{param.default}`"
        if param.is_flag and param.default is True:
            default = "on"
        if param.required:
            default = "required"
        where = "" if len(commands) == len(OPTION_COMMANDS) else f" ({', '.join(commands)} only)"
        text = " ".join((param.help or "").split()).replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")
        out.append(f"| `{flag}` | `{param.envvar}` | {default} | {text}{where} |")
    return out


def render(text: str) -> str:
    for (marker, header), rows in ((COMMANDS, command_rows()), (OPTIONS, option_rows())):
        start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = head + start + "\n" + "\n".join([*header, *rows]) + "\n" + end + tail
    return text


def main() -> int:
    current = PAGE.read_text()
    new = render(current)
    if "--check" in sys.argv:
        if new != current:
            print(f"{PAGE.relative_to(PAGE.parents[2])} is stale: run python ci/gen_cli_docs.py", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
