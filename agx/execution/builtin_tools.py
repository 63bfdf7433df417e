"""The tools agx runs itself, each declared once: its spec (what the planner sees), its runner
(how it runs, agx/execution/runners.py) and which argument names the file(s) it writes.

Specs are plain data of the planning layer (agx/planning/tools.py); this module sits in the
execution layer because it ties them to runners. Planning never needs it: the planner is handed
a catalogue by whoever calls it.
"""

from __future__ import annotations

from dataclasses import dataclass

from agx.execution import runners as r
from agx.execution.code_tool import run_code
from agx.execution.runners import Runner
from agx.planning.tools import Risk, ToolCatalogue, ToolSpec


@dataclass(frozen=True)
class BuiltinTool:
    spec: ToolSpec
    run: Runner
    # The argument that names the file(s) the task writes and commits itself (a path or a list of
    # paths). While it runs, a concurrent command's commit leaves those files to it.
    writes: str | None = None

    @property
    def name(self) -> str:
        return self.spec.name


def _obj(properties: dict, required: list[str]) -> dict:
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


_STR = {"type": "string"}
_PATHS = {"type": "array", "items": _STR, "minItems": 1, "maxItems": 16}


def _tool(name: str, description: str, args: dict, risk: Risk, run: Runner, writes: str | None = None) -> BuiltinTool:
    return BuiltinTool(ToolSpec(name, description, args, risk, True), run, writes)


BUILTIN: tuple[BuiltinTool, ...] = (
    _tool("read_files", "Read files of the repository; output is their text.",
          _obj({"paths": _PATHS}, ["paths"]), Risk.READ, r.run_read_files),
    _tool("search", "Search the repository for a regular expression; output is matching lines as path:line: text.",
          _obj({"pattern": _STR, "path": _STR}, ["pattern"]), Risk.READ, r.run_search),
    _tool("shell", "Run a shell command in the repository; output is its stdout and stderr.",
          _obj({"command": _STR}, ["command"]), Risk.EXEC, r.run_shell),
    _tool("write_file", "Create or overwrite a file with the given content.",
          _obj({"path": _STR, "content": _STR}, ["path", "content"]), Risk.WRITE, r.run_write_file, writes="path"),
    _tool("edit_file", "Edit a file by exact search/replace pairs; fails if a search text is not found exactly once.",
          _obj({"path": _STR, "edits": {"type": "array", "minItems": 1, "maxItems": 8,
                                        "items": _obj({"search": _STR, "replace": _STR}, ["search", "replace"])}},
               ["path", "edits"]),
          Risk.WRITE, r.run_edit_file, writes="path"),
    _tool("code", "Change files by instruction: when the task runs, the model reads the files' current text "
                  "(and the deps' outputs) and writes edits that always apply.",
          _obj({"paths": {**_PATHS, "maxItems": 8}, "instruction": _STR}, ["paths", "instruction"]),
          Risk.WRITE, run_code, writes="paths"),
    _tool("ask_model", "Ask the model a question; the prompt may include dependency outputs via ${ID}. Output is its answer.",
          _obj({"prompt": _STR}, ["prompt"]), Risk.READ, r.run_ask_model),
    _tool("run_tests", "Run the project's test suite (configured command or detected); output is the test report.",
          _obj({"command": _STR}, []), Risk.EXEC, r.run_tests),
    _tool("git_commit", "Commit all changes made so far in the plan's worktree with a message.",
          _obj({"message": _STR}, ["message"]), Risk.WRITE, r.run_git_commit),
)

BUILTIN_TOOLS: tuple[ToolSpec, ...] = tuple(t.spec for t in BUILTIN)
BY_NAME: dict[str, BuiltinTool] = {t.name: t for t in BUILTIN}


def builtin_catalogue(*, code: bool = True) -> ToolCatalogue:
    """The built-in tools; `code=False` leaves out the grounded edit tool (agent.code_tool = false:
    edits written blind in the plan, bench_agent's baseline)."""
    return ToolCatalogue.of(t for t in BUILTIN_TOOLS if code or t.name != "code")


def written_paths(tool: str, args: dict) -> list[str]:
    """The files a task of `tool` with these arguments writes itself (empty: none declared)."""
    t = BY_NAME.get(tool)
    value = args.get(t.writes) if t is not None and t.writes else None
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [p for p in value if isinstance(p, str)]
    return []


class _Runners(dict):
    """Runners by tool name; any `server.tool` name (an MCP tool) runs through run_mcp_tool."""

    def get(self, name, default=None):
        found = super().get(name)
        if found is None and "." in name:
            return r.run_mcp_tool
        return default if found is None else found


RUNNERS: dict[str, Runner] = _Runners({t.name: t.run for t in BUILTIN})
