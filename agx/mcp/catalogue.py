"""MCP tools as catalogue entries Delta can plan with: `server.tool`.

Risk comes from the tool's annotations (hints the server gives; MCP's defaults when absent are
"may write, may destroy"): readOnlyHint true -> read (may run unapproved with --auto read);
anything else -> exec, which always needs approval (destructiveHint is shown in listings).

The input schema is kept for validation and, bounded, for the grammar. A schema llama.cpp's
grammar converter cannot express (it raises) leaves the tool out of planning, with the reason
reported (`agx mcp list`, and a warning when planning) — never dropped silently; such a tool
can still be called directly (`agx mcp call`).
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from typing import Any

from agx.planning.tools import Risk, ToolCatalogue, ToolSpec

DESCRIPTION_MAX_CHARS = 200
# Keys that only document a schema: dropped from what the prompt and grammar carry.
_DOC_KEYS = ("title", "$schema", "examples", "$comment")


@dataclass(frozen=True)
class Unplannable:
    name: str  # server.tool
    reason: str

    def line(self) -> str:
        return f"{self.name}: not offered to Delta: {self.reason}"


def qualified_name(server: str, tool: str) -> str:
    return f"{server}.{tool}"


def short_description(text: str | None) -> str:
    """First paragraph, whitespace collapsed, at most DESCRIPTION_MAX_CHARS (prompt lines are one line)."""
    text = (text or "").strip()
    first = re.split(r"\n\s*\n", text, maxsplit=1)[0]
    first = " ".join(first.split())
    if len(first) <= DESCRIPTION_MAX_CHARS:
        return first
    cut = first[:DESCRIPTION_MAX_CHARS]
    sentence = cut.rfind(". ")
    return cut[: sentence + 1] if sentence > 60 else cut.rsplit(" ", 1)[0] + " ..."


def risk_of(tool: Any) -> Risk:
    ann = getattr(tool, "annotations", None)
    if ann is not None and getattr(ann, "read_only_hint", None) is True:
        return Risk.READ
    return Risk.EXEC


def is_destructive(tool: Any) -> bool:
    ann = getattr(tool, "annotations", None)
    if getattr(ann, "read_only_hint", None) is True:
        return False
    # MCP: destructiveHint defaults to true when the tool is not read-only.
    return getattr(ann, "destructive_hint", None) is not False


def _clean(node: Any) -> Any:
    if isinstance(node, list):
        return [_clean(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _clean(v) for k, v in node.items() if k not in _DOC_KEYS}
    # Objects that list their properties get no invented extra ones in Delta's grammar.
    if isinstance(out.get("properties"), dict) and "additionalProperties" not in out:
        out["additionalProperties"] = False
    # `properties` maps names to schemas: a property called "title" is not a doc key.
    if isinstance(node.get("properties"), dict):
        out["properties"] = {k: _clean(v) for k, v in node["properties"].items()}
    return out


def args_schema_of(tool: Any) -> dict[str, Any]:
    schema = copy.deepcopy(getattr(tool, "input_schema", None) or {"type": "object"})
    schema = _clean(schema)
    schema.setdefault("type", "object")
    schema.setdefault("properties", {})
    return schema


def grammar_problem(schema: dict[str, Any]) -> str | None:
    """Why llama.cpp's grammar cannot express `schema` (bounded as the planner bounds it), or None."""
    from agx.planning.schema_grammar import bounded_schema

    try:
        json.dumps(schema)
    except (TypeError, ValueError) as exc:
        return f"schema is not JSON ({exc})"
    try:
        from llama_cpp.llama_grammar import SchemaConverter
    except ImportError:  # no in-process backend: remote servers validate JSON schema themselves
        return None
    conv = SchemaConverter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    try:
        conv.visit(conv.resolve_refs(bounded_schema(schema), "probe"), "probe")
    except Exception as exc:  # noqa: BLE001 - the converter raises assorted types
        return f"its input schema cannot be turned into a grammar ({type(exc).__name__}: {exc})"
    return None


def tool_spec(server: str, tool: Any) -> ToolSpec | Unplannable:
    name = qualified_name(server, tool.name)
    schema = args_schema_of(tool)
    problem = grammar_problem(schema)
    if problem is None:
        from jsonschema import Draft202012Validator
        from jsonschema.exceptions import SchemaError

        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as exc:
            problem = f"its input schema is not valid JSON Schema ({exc.message})"
    if problem is not None:
        return Unplannable(name, problem)
    return ToolSpec(name, short_description(tool.description) or tool.name, schema, risk_of(tool), True)


def mcp_tool_specs(statuses) -> tuple[list[ToolSpec], list[Unplannable]]:
    """Catalogue entries for every tool of the servers that are up, and the tools left out."""
    specs: list[ToolSpec] = []
    left_out: list[Unplannable] = []
    for st in statuses:
        for tool in st.tools:
            entry = tool_spec(st.name, tool)
            (left_out if isinstance(entry, Unplannable) else specs).append(entry)
    return specs, left_out


def with_mcp_tools(base: ToolCatalogue, statuses) -> tuple[ToolCatalogue, list[Unplannable]]:
    """`base` (the built-in tools) plus the MCP servers' plannable tools."""
    specs, left_out = mcp_tool_specs(statuses)
    cat = ToolCatalogue.of(list(base))
    for spec in specs:
        if cat.get(spec.name) is None:
            cat.add(spec)
    return cat, left_out
