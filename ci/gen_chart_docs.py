"""Generate from each chart's values.yaml (never by hand): its values.schema.json and its values table, in the
chart's README and in the documentation's chart values page (between the chart's own markers there).

Each key's `# --` comment is its description; `# @schema` lines add what the default cannot tell:
`required`, `enum=a,b`, `minimum=0`, `maximum=100`, `pattern=...`, `minLength=1`, `type=integer,null`,
`items=string` / `items=object` / `items=enum:a,b`, `additionalProperties=string|object|true`.
Objects are strict (`additionalProperties: false`) unless annotated: a mistyped key fails `helm install`.

    python ci/gen_chart_docs.py          # rewrite every chart's values.schema.json, README and docs table
    python ci/gen_chart_docs.py --check  # exit 1 when any of them is stale (CI)
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
# chart directory -> the marker name of its values table on the documentation's chart values page
PAGE = ROOT / "docs" / "reference" / "chart-values.md"
CHARTS = {
    ROOT / "charts" / "mlflow-kserve": "values",
    ROOT / "charts" / "mlflow-kserve-runtime": "runtime-values",
}
KEY = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z0-9_.-]+):(?:\s|$)")


def parse_comments(text: str) -> dict[str, dict[str, Any]]:
    """Dotted key path -> {"description": str, "schema": {annotations}} from the comments above each key."""
    out: dict[str, dict[str, Any]] = {}
    stack: list[tuple[int, str]] = []
    description: list[str] = []
    annotations: list[str] = []
    in_doc = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            description, annotations, in_doc = [stripped[4:].strip()], [], True
            continue
        if stripped.startswith("# @schema"):
            annotations.append(stripped[len("# @schema") :].strip())
            continue
        if stripped.startswith("#"):
            if in_doc:
                description.append(stripped[1:].strip())
            continue
        match = KEY.match(line)
        if not match or stripped.startswith("-"):
            continue
        indent = len(match.group("indent"))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match.group("key")))
        path = ".".join(k for _, k in stack)
        if description or annotations:
            out[path] = {"description": " ".join(description).strip(), "schema": _annotations(annotations)}
        description, annotations, in_doc = [], [], False
    return out


def _annotations(lines: list[str]) -> dict[str, str]:
    result: dict[str, str] = {}
    for line in lines:
        for token in line.split():
            key, _, value = token.partition("=")
            result[key] = value if value else "true"
    return result


def _type_of(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "string"


def schema_for(value: Any, path: str, docs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    doc = docs.get(path, {})
    notes: dict[str, str] = doc.get("schema", {})
    schema: dict[str, Any] = {}
    if doc.get("description"):
        schema["description"] = doc["description"]
    kind = notes.get("type")
    schema["type"] = kind.split(",") if kind and "," in kind else (kind or _type_of(value))
    if "enum" in notes:
        schema["enum"] = notes["enum"].split(",")
    for number in ("minimum", "maximum", "minLength"):
        if number in notes:
            schema[number] = int(notes[number])
    if "pattern" in notes:
        schema["pattern"] = notes["pattern"]
    if schema["type"] == "array":
        items = notes.get("items", "string")
        schema["items"] = (
            {"type": "string", "enum": items[5:].split(",")} if items.startswith("enum:") else {"type": items}
        )
    if schema["type"] == "object":
        extra = notes.get("additionalProperties")
        if extra == "true":
            schema["additionalProperties"] = True
        elif extra:
            schema["additionalProperties"] = {"type": extra}
        else:
            schema["additionalProperties"] = False
            schema["properties"] = {
                key: schema_for(child, f"{path}.{key}" if path else key, docs) for key, child in value.items()
            }
            required = [
                key for key in value if docs.get(f"{path}.{key}" if path else key, {}).get("schema", {}).get("required")
            ]
            if required:
                schema["required"] = required
    return schema


def build_schema(values: dict[str, Any], docs: dict[str, dict[str, Any]], title: str) -> dict[str, Any]:
    root = schema_for(values, "", docs)
    root.pop("description", None)
    return {"$schema": "http://json-schema.org/draft-07/schema#", "title": f"{title} values", **root}


def rows(values: Any, docs: dict[str, dict[str, Any]], path: str = "") -> list[str]:
    out = []
    for key, value in values.items():
        full = f"{path}.{key}" if path else key
        doc = docs.get(full)
        if isinstance(value, dict) and value and not doc:
            out += rows(value, docs, full)
            continue
        if doc is None:
            continue
        default = json.dumps(value) if not isinstance(value, str) else (f'"{value}"' if value else '""')
        kind = schema_for(value, full, docs)["type"]
        kind = "/".join(kind) if isinstance(kind, list) else kind
        text = doc["description"].replace("|", "\\|")
        out.append(f"| `{full}` | {kind} | `{default}` | {text} |")
    return out


def _replace_between(text: str, marker: str, body: list[str]) -> str:
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return head + start + "\n" + "\n".join(body) + "\n" + end + tail


def render(chart: Path, marker: str, outputs: dict[Path, str]) -> None:
    """Add one chart's generated files to ``outputs``: its schema, its README's table, its table on the chart
    values page (built on what ``outputs`` already holds for that file)."""
    text = (chart / "values.yaml").read_text()
    values = yaml.safe_load(text)
    docs = parse_comments(text)
    table = ["| key | type | default | description |", "|---|---|---|---|", *rows(values, docs)]
    outputs[chart / "values.schema.json"] = json.dumps(build_schema(values, docs, chart.name), indent=2) + "\n"
    outputs[chart / "README.md"] = _replace_between((chart / "README.md").read_text(), "values", table)
    outputs[PAGE] = _replace_between(outputs.get(PAGE) or PAGE.read_text(), marker, table)


def undocumented(values: Any, docs: dict[str, dict[str, Any]], path: str = "") -> list[str]:
    """Leaf keys (or free-form maps) without a `# --` comment."""
    missing = []
    for key, value in values.items():
        full = f"{path}.{key}" if path else key
        if full in docs:
            continue
        if isinstance(value, dict) and value:
            missing += undocumented(value, docs, full)
        else:
            missing.append(full)
    return missing


def main() -> int:
    outputs: dict[Path, str] = {}
    for chart, marker in CHARTS.items():
        text = (chart / "values.yaml").read_text()
        missing = undocumented(yaml.safe_load(text), parse_comments(text))
        if missing:
            print(f"{chart.name}: values without a '# --' comment: {', '.join(missing)}", file=sys.stderr)
            return 1
        render(chart, marker, outputs)
    if "--check" in sys.argv:
        stale = [str(path) for path, new in outputs.items() if path.read_text() != new]
        if stale:
            print(f"stale: {', '.join(stale)}; run python ci/gen_chart_docs.py", file=sys.stderr)
            return 1
        return 0
    for path, new in outputs.items():
        path.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
