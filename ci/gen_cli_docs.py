"""Fill README.md's CLI options table from the click option definitions (the single source of truth).

python ci/gen_cli_docs.py          # rewrite README.md
python ci/gen_cli_docs.py --check  # exit 1 when README.md is stale (a test runs this)
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from mlflow_kserve import cli

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- cli-options:start -->", "<!-- cli-options:end -->"


COMMANDS = ("init", "check", "run", "build")


def rows() -> list[str]:
    seen: dict[str, tuple[click.Option, list[str]]] = {}
    for name in COMMANDS:
        command = cli.cli.commands[name]
        for param in command.params:
            if isinstance(param, click.Option) and param.name != "help":
                seen.setdefault(param.name or "", (param, []))[1].append(name)
    out = []
    for param, commands in seen.values():
        flag = " / ".join(param.opts + param.secondary_opts)
        default = "" if param.default in (None, (), False) or param.multiple else f"`{param.default}`"
        if param.is_flag and param.default is True:
            default = "on"
        if param.required:
            default = "required"
        where = "" if len(commands) == len(COMMANDS) else f" ({', '.join(commands)} only)"
        text = " ".join((param.help or "").split()).replace("|", "\\|")
        out.append(f"| `{flag}` | `{param.envvar}` | {default} | {text}{where} |")
    return out


def render(text: str) -> str:
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return head + START + "\n" + "\n".join(rows()) + "\n" + END + tail


def main() -> int:
    current = README.read_text()
    new = render(current)
    if "--check" in sys.argv:
        if new != current:
            print("README.md's CLI table is stale: run python ci/gen_cli_docs.py", file=sys.stderr)
            return 1
        return 0
    README.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
