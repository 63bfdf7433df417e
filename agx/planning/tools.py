"""The tool catalogue: what Delta may plan with.

A `ToolSpec` declares a tool's name, one-line description, JSON schema for its arguments and
risk level. How a tool *runs* lives in the execution layer (agx/execution/builtin_tools.py
declares each built-in tool once: spec, runner, the file it writes); runners are keyed by
name, so a catalogue loaded from a file can describe tools agx cannot run itself (useful
for planning benchmarks such as TaskBench).
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable


class Risk(str, enum.Enum):
    READ = "read"  # reads the repository only: may run unapproved
    WRITE = "write"  # writes files in the plan's worktree
    EXEC = "exec"  # runs commands


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    args_schema: dict[str, Any]
    risk: Risk = Risk.READ
    # True when agx has a runner for it; catalogue-file tools are plan-only.
    runnable: bool = False
    # What the tool takes and gives ("video", "audio", "text", ...; lower case), where a
    # catalogue says so (TaskBench's input-type / output-type). Empty: untyped. Typed tools let
    # the plan grammar wire a task only to a tool that accepts its input's output
    # (schema_grammar, "typed links").
    input_types: tuple[str, ...] = ()
    output_types: tuple[str, ...] = ()

    def accepts(self, produced: tuple[str, ...]) -> bool:
        """Whether this tool can take the output of a tool that gives `produced` (an untyped
        side on either end accepts anything)."""
        return not produced or not self.input_types or bool(set(produced) & set(self.input_types))

    def prompt_line(self) -> str:
        props = self.args_schema.get("properties", {})
        required = set(self.args_schema.get("required", []))
        args = ", ".join(f"{k}{'' if k in required else '?'}: {v.get('type', 'any')}" for k, v in props.items())
        return f"- {self.name}({args}) [{self.risk.value}]: {self.description}"


@dataclass
class ToolCatalogue:
    tools: dict[str, ToolSpec] = field(default_factory=dict)

    def add(self, spec: ToolSpec) -> None:
        if spec.name in self.tools:
            raise ValueError(f"tool {spec.name!r} registered twice")
        self.tools[spec.name] = spec

    def get(self, name: str) -> ToolSpec | None:
        return self.tools.get(name)

    def names(self) -> list[str]:
        return list(self.tools)

    def typed(self) -> bool:
        """Whether any tool declares what it gives (typed links apply)."""
        return any(t.output_types for t in self.tools.values())

    def __iter__(self):
        return iter(self.tools.values())

    def __len__(self) -> int:
        return len(self.tools)

    @classmethod
    def of(cls, specs: Iterable[ToolSpec]) -> "ToolCatalogue":
        cat = cls()
        for s in specs:
            cat.add(s)
        return cat


class CatalogueFileError(ValueError):
    pass


def io_types_note(entry: dict[str, Any]) -> str:
    """TaskBench's `input-type` / `output-type` of a tool as a sentence: "Input: video, audio.
    Output: video." ("" when the entry has neither). A chain's tools are picked by what each
    step takes and gives (transcribing a video needs Video-to-Audio before Audio-to-Text), and
    TaskBench's own prompts show the types; a description alone does not say it."""
    parts = []
    for key, label in (("input-type", "Input"), ("output-type", "Output")):
        if types := _type_list(entry, key):
            parts.append(f"{label}: {', '.join(types)}.")
    return " ".join(parts)


def _type_list(entry: dict[str, Any], *keys: str) -> tuple[str, ...]:
    """A tool's declared types under the first of `keys` it has, lower-cased ("Image" and
    "image" are one type in TaskBench's file)."""
    for key in keys:
        value = entry.get(key)
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list):
            return tuple(str(v).strip().lower() for v in value if str(v).strip())
    return ()


def load_catalogue_file(path: str | Path, io_types: bool = False) -> ToolCatalogue:
    """A JSON file: a list of {"name", "description", "args_schema"?, "risk"?}, or TaskBench's
    tool_desc.json ({"nodes": [{"id", "desc", "parameters"?, "input-type"?, "output-type"?}]}).
    `io_types` appends a TaskBench tool's input and output types to its description
    (`io_types_note`). Declared types (`input-type`/`output-type`, or agx's `input_types` /
    `output_types`) are kept on the ToolSpec either way: the plan grammar reads them."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CatalogueFileError(f"{path}: file not found") from None
    except json.JSONDecodeError as exc:
        raise CatalogueFileError(f"{path}: invalid JSON ({exc})") from None
    entries = data.get("nodes") if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise CatalogueFileError(f"{path}: expected a list of tools or an object with 'nodes'")
    cat = ToolCatalogue()
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise CatalogueFileError(f"{path}: tool #{i}: expected an object")
        name = entry.get("name") or entry.get("id")
        desc = entry.get("description") or entry.get("desc") or ""
        if io_types and isinstance(desc, str) and (note := io_types_note(entry)):
            desc = f"{desc.rstrip()} {note}".strip()
        if not isinstance(name, str) or not name:
            raise CatalogueFileError(f"{path}: tool #{i}: missing 'name'")
        schema = entry.get("args_schema")
        if schema is None:
            # TaskBench-style: positional arguments given as a list of strings.
            schema = {"type": "object", "properties": {"inputs": {"type": "array", "items": {"type": "string"}}},
                      "required": ["inputs"], "additionalProperties": False}
        risk = entry.get("risk", "read")
        try:
            cat.add(ToolSpec(
                name=name, description=desc, args_schema=schema, risk=Risk(risk), runnable=False,
                input_types=_type_list(entry, "input_types", "input-type"),
                output_types=_type_list(entry, "output_types", "output-type"),
            ))
        except ValueError as exc:
            raise CatalogueFileError(f"{path}: tool {name!r}: {exc}") from None
    return cat
