"""Specs of the tools agx runs itself. Their runners live in agx/execution/runners.py."""

from __future__ import annotations

from agx.planning.tools import Risk, ToolCatalogue, ToolSpec


def _obj(properties: dict, required: list[str]) -> dict:
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


_STR = {"type": "string"}

BUILTIN_TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec(
        "read_files", "Read files of the repository; output is their text.",
        _obj({"paths": {"type": "array", "items": _STR, "minItems": 1, "maxItems": 16}}, ["paths"]),
        Risk.READ, True,
    ),
    ToolSpec(
        "search", "Search the repository for a regular expression; output is matching lines as path:line: text.",
        _obj({"pattern": _STR, "path": _STR}, ["pattern"]),
        Risk.READ, True,
    ),
    ToolSpec(
        "shell", "Run a shell command in the repository; output is its stdout and stderr.",
        _obj({"command": _STR}, ["command"]),
        Risk.EXEC, True,
    ),
    ToolSpec(
        "write_file", "Create or overwrite a file with the given content.",
        _obj({"path": _STR, "content": _STR}, ["path", "content"]),
        Risk.WRITE, True,
    ),
    ToolSpec(
        "edit_file", "Edit a file by exact search/replace pairs; fails if a search text is not found exactly once.",
        _obj(
            {"path": _STR, "edits": {"type": "array", "minItems": 1, "maxItems": 8,
                                     "items": _obj({"search": _STR, "replace": _STR}, ["search", "replace"])}},
            ["path", "edits"],
        ),
        Risk.WRITE, True,
    ),
    ToolSpec(
        "ask_model", "Ask the model a question; the prompt may include dependency outputs via ${ID}. Output is its answer.",
        _obj({"prompt": _STR}, ["prompt"]),
        Risk.READ, True,
    ),
    ToolSpec(
        "run_tests", "Run the project's test suite (configured command or detected); output is the test report.",
        _obj({"command": _STR}, []),
        Risk.EXEC, True,
    ),
    ToolSpec(
        "git_commit", "Commit all changes made so far in the plan's worktree with a message.",
        _obj({"message": _STR}, ["message"]),
        Risk.WRITE, True,
    ),
)


def builtin_catalogue() -> ToolCatalogue:
    return ToolCatalogue.of(BUILTIN_TOOLS)
