"""Delta's planning prompt, repair prompt and compact repository context.

Everything here is deterministic (same inputs -> same messages): the fine-tuning set is built
from `build_plan_messages`, and a prompt that drifts between training and use costs accuracy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agx.planning.schema_grammar import canonical_plan_json
from agx.planning.tools import ToolCatalogue, ToolSpec
from agx.workspace.gitread import output_or_none

MAX_TREE_FILES = 60
MAX_STATUS_LINES = 20
MAX_README_LINES = 15
MAX_CONTEXT_CHARS = 3000
MAX_REPORTED_ERRORS = 12

_SYSTEM_TEMPLATE = """\
You are Delta, a planner. Turn the user's request into a plan: a JSON object
{{"goal": "...", "tasks": [{{"id": ..., "title": ..., "tool": ..., "deps": [...], "args": {{...}}}}, ...]}}.

Rules:
- id: short and unique (t1, t2, ...). title: a few words saying what the task does.
- tool: one of the tools below; args: exactly that tool's arguments (? marks optional ones).
- deps: the ids of the tasks whose output this task needs. Never the task itself, no cycles.
- To use a dependency's output inside an argument, write ${{ID}} (for example "${{t1}}"); ID must be in deps.
- Tasks without deps between them run in parallel: add only the deps that are needed.
- Use as few tasks as the request needs, at most {max_tasks}.{code_rule}

Tools:
{tools}

Example request: {example_request}
Example plan: {example_plan}"""


def _sample_value(schema: dict[str, Any], text: str) -> Any:
    """A small value that fits `schema`, for the prompt's example."""
    kind = schema.get("type")
    if "enum" in schema and schema["enum"]:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    if kind == "array":
        return [_sample_value(schema.get("items") or {"type": "string"}, text)]
    if kind == "object":
        return _sample_args(schema, text)
    if kind in ("integer", "number"):
        return 1
    if kind == "boolean":
        return True
    return text


def _sample_args(schema: dict[str, Any], text: str) -> dict[str, Any]:
    props = schema.get("properties") or {}
    required = schema.get("required") or list(props)[:1]
    return {name: _sample_value(props[name], text) for name in required if name in props}


def _example(catalogue: ToolCatalogue) -> tuple[str, dict[str, Any]]:
    """A two-task example over tools the catalogue really has."""
    if catalogue.get("read_files") and catalogue.get("ask_model"):
        return "Explain what src/app.py does", {
            "goal": "Explain src/app.py",
            "tasks": [
                {"id": "t1", "title": "Read the file", "tool": "read_files", "deps": [],
                 "args": {"paths": ["src/app.py"]}},
                {"id": "t2", "title": "Explain it", "tool": "ask_model", "deps": ["t1"],
                 "args": {"prompt": "Explain this code: ${t1}"}},
            ],
        }
    specs: list[ToolSpec] = list(catalogue)
    first, second = specs[0], specs[1] if len(specs) > 1 else specs[0]
    return f"Use {first.name}, then {second.name} on its result", {
        "goal": f"{first.name} then {second.name}",
        "tasks": [
            {"id": "t1", "title": f"Run {first.name}", "tool": first.name, "deps": [],
             "args": _sample_args(first.args_schema, "example")},
            {"id": "t2", "title": f"Run {second.name}", "tool": second.name, "deps": ["t1"],
             "args": _sample_args(second.args_schema, "${t1}")},
        ],
    }


# Said only when the catalogue has the tool, so prompts for other catalogues stay as they were.
_CODE_RULE = """
- To change code, use code with the files and an instruction: it edits them when it runs, with their
  current text in view. Use write_file/edit_file only when you know the exact text."""


def system_prompt(catalogue: ToolCatalogue, max_tasks: int = 10) -> str:
    example_request, example_plan = _example(catalogue)
    return _SYSTEM_TEMPLATE.format(
        max_tasks=max_tasks,
        code_rule=_CODE_RULE if catalogue.get("code") else "",
        tools="\n".join(spec.prompt_line() for spec in catalogue),
        example_request=example_request,
        example_plan=canonical_plan_json(example_plan),
    )


# -- the compact style, for small models -----------------------------------------------------
# For small planners (roles.delta.prompt_style = "compact"). Measured with the raw bundled 135M
# model on 40 TaskBench multimedia held-out records (bench/bench_prompt_variants.py, README
# Performance): the full prompt (rules, typed lines with risk tags, a worked example over the
# catalogue's own tools) makes it copy the example (valid 7.5%, 1,515 prompt tokens); compact:
# valid 87.5%, 1,028 tokens; node F1 stays near zero either way (3.75 vs 4.5) until it is trained.
_COMPACT_INSTRUCTION = (
    "Plan the request with the tools below: a JSON list of tasks, each using one tool; a task's deps are "
    "the earlier tasks whose output it uses, written as ${t1} in its args."
)

# A generic example over tools no catalogue is expected to have: it shows the plan's shape
# (deps, ${ID}) without suggesting any real tool.
_GENERIC_EXAMPLE_REQUEST = "Get the weather in Paris and email it to me"
_GENERIC_EXAMPLE_PLAN = {
    "goal": "Email the weather in Paris",
    "tasks": [
        {"id": "t1", "title": "Get the weather", "tool": "get_weather", "deps": [], "args": {"city": "Paris"}},
        {"id": "t2", "title": "Email it", "tool": "send_email", "deps": ["t1"], "args": {"body": "${t1}"}},
    ],
}

PROMPT_STYLES = ("full", "compact", "compact_example")
DEFAULT_PROMPT_STYLE = "full"


def compact_tool_line(spec: ToolSpec) -> str:
    """`- name(arg, opt?): description` (no types, no risk tag)."""
    props = spec.args_schema.get("properties", {})
    required = set(spec.args_schema.get("required", []))
    args = ", ".join(f"{k}{'' if k in required else '?'}" for k in props)
    return f"- {spec.name}({args}): {spec.description}"


def compact_system_prompt(catalogue: ToolCatalogue, example: bool = False) -> str:
    lines = [_COMPACT_INSTRUCTION, "", "Tools:", *(compact_tool_line(spec) for spec in catalogue)]
    if example:
        lines += ["", f"Example (other tools): {_GENERIC_EXAMPLE_REQUEST}",
                  f"Plan: {canonical_plan_json(_GENERIC_EXAMPLE_PLAN)}"]
    return "\n".join(lines)


def plan_system_prompt(catalogue: ToolCatalogue, max_tasks: int = 10, style: str = DEFAULT_PROMPT_STYLE) -> str:
    """Delta's system prompt in one of PROMPT_STYLES."""
    if style == "full":
        return system_prompt(catalogue, max_tasks)
    if style == "compact":
        return compact_system_prompt(catalogue)
    if style == "compact_example":
        return compact_system_prompt(catalogue, example=True)
    raise ValueError(f"unknown prompt style {style!r} (one of {', '.join(PROMPT_STYLES)})")


def build_plan_messages(
    request: str, catalogue: ToolCatalogue, repo_context: str | None = None, max_tasks: int = 10,
    style: str = DEFAULT_PROMPT_STYLE,
) -> list[dict[str, str]]:
    """Chat messages asking Delta for a plan: system (rules, tools, example), user (request)."""
    user = f"Request: {request.strip()}"
    if repo_context:
        user += f"\n\nRepository:\n{repo_context.strip()}"
    return [
        {"role": "system", "content": plan_system_prompt(catalogue, max_tasks, style)},
        {"role": "user", "content": user},
    ]


def repair_messages(previous_messages: list[dict[str, str]], bad_output: str, errors: list[str]) -> list[dict[str, str]]:
    """The conversation extended with Delta's invalid plan and the exact errors to fix.

    Pass the *original* planning messages each round, so the context stays one attempt long."""
    shown = errors[:MAX_REPORTED_ERRORS]
    more = len(errors) - len(shown)
    listing = "\n".join(f"- {e}" for e in shown) + (f"\n- ... and {more} more" if more > 0 else "")
    return [
        *previous_messages,
        {"role": "assistant", "content": bad_output},
        {"role": "user", "content": f"That plan is invalid:\n{listing}\nWrite the whole corrected plan as JSON."},
    ]


# -- repository context ---------------------------------------------------------------------
def _git(repo: Path, *args: str) -> str | None:
    return output_or_none(repo, *args)  # the workspace layer's git (GitPython)


def _truncate_lines(lines: list[str], limit: int, what: str) -> list[str]:
    if len(lines) <= limit:
        return lines
    return lines[:limit] + [f"... and {len(lines) - limit} more {what}"]


def _file_tree(files: list[str], budget: int) -> list[str]:
    """One line per directory ("dir/: a.py, b.py"): at most MAX_TREE_FILES files and about
    `budget` characters, then a count of the files left out."""
    by_dir: dict[str, list[str]] = {}
    used = shown = 0
    for f in files[:MAX_TREE_FILES]:
        parent, _, name = f.rpartition("/")
        cost = len(name) + 2 + (0 if parent in by_dir else len(parent) + 4)
        if used + cost > budget:
            break
        by_dir.setdefault(parent, []).append(name)
        used += cost
        shown += 1
    lines = [f"{d + '/' if d else './'}: {', '.join(names)}" for d, names in by_dir.items()]
    if len(files) > shown:
        lines.append(f"... and {len(files) - shown} more files")
    return lines


def repo_context(repo_dir: str | Path) -> str:
    """A compact view of a repository for the prompt: files, git status, head of the README.

    Bounded (MAX_CONTEXT_CHARS: half files, a quarter each status and README) whatever the
    repository's size; '' outside a git repository."""
    repo = Path(repo_dir)
    files_out = _git(repo, "ls-files", "--cached", "--others", "--exclude-standard")
    if files_out is None:
        return ""
    files = sorted(set(f for f in files_out.splitlines() if f))
    parts = ["\n".join(["Files:", *_file_tree(files, MAX_CONTEXT_CHARS // 2 - 40)])]
    status = [line for line in (_git(repo, "status", "--short") or "").splitlines() if line.strip()]
    status_lines = ["Git status:" if status else "Git status: clean", *_truncate_lines(status, MAX_STATUS_LINES, "changes")]
    parts.append(_clip("\n".join(status_lines), MAX_CONTEXT_CHARS // 4))
    readme = next((repo / name for name in ("README.md", "README.rst", "README.txt", "README") if (repo / name).is_file()), None)
    if readme is not None:
        try:
            head = readme.read_text(encoding="utf-8", errors="replace").splitlines()[:MAX_README_LINES]
        except OSError:
            head = []
        if head:
            parts.append(_clip("\n".join([f"{readme.name} (head):", *head]), MAX_CONTEXT_CHARS // 4 - 2))
    return "\n".join(parts)


def _clip(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, saying so when it was cut."""
    if len(text) <= limit:
        return text
    marker = "\n... (truncated)"
    return text[: limit - len(marker)].rstrip() + marker

