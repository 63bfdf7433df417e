"""What Delta's output is constrained by: a plan JSON schema, and a stricter llama.cpp grammar.

Both are stricter than validation on purpose: they only have to describe *some* valid plans,
and every bound they set keeps a small model from looping. Measured: without array bounds
SmolLM2-135M repeats one tool name until max_tokens and nothing parses.

Shape and emission order (the grammar fixes property order to the order listed here):

    {"goal": str, "tasks": [{"id", "title", "deps", "tool", "args"}, ...]}

`deps` comes *before* `tool` and `args`: a `${ID}` placeholder inside args may only name a
declared dependency, so the model writes its deps first and its args are conditioned on them;
and `tool`+`args` stay adjacent, so the tool/args pairing is one rule per tool.

- `plan_json_schema` (any backend; remote servers get it as structured output): each task is
  an `anyOf` with one variant per tool ({"tool": {"const": name}, "args": its schema}), so args
  always fit the chosen tool.
- `plan_gbnf` (in-process llama.cpp): the same, plus what a JSON schema cannot say: task k has
  id "tk" and may only depend on t1..t(k-1). Ids are then unique and the graph is acyclic by
  construction; and task 1, which can have no deps, gets argument strings that cannot hold a
  `${ID}` placeholder (`_first_task_args`). Validation still runs (placeholders in later tasks,
  hand-written plans, remote backends).

llama.cpp's converter (llama_cpp.llama_grammar) supports `pattern` only anchored (^...$) and
ignores maxLength when a pattern is present, so ids are bounded by the pattern's `{0,N}`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import threading
from collections import OrderedDict
from typing import Any

from agx.planning.gbnf_rules import NO_PLACEHOLDER_CHAR, copy_with_swapped_rule, merge_identical, parse_rules
from agx.planning.tools import ToolCatalogue

# Grammar-side id pattern: a subset of plan.TASK_ID_PATTERN (which validation enforces).
# Shorter than validation allows: short ids are all a plan needs and cost fewer tokens.
GRAMMAR_TASK_ID_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]{0,15}$"
TASK_FIELD_ORDER = ("id", "title", "deps", "tool", "args")
PLAN_FIELD_ORDER = ("goal", "tasks")

GOAL_MAX_CHARS = 200
TITLE_MAX_CHARS = 100
# Bounds added to argument schemas that set none (strings, arrays), for the grammar only.
ARG_STRING_MAX_CHARS = 1000
ARG_ARRAY_MAX_ITEMS = 8
# llama.cpp expands maxLength N into N nested optional groups, and its grammar parser rejects
# (then the process crashes on) a string bound somewhere between 1000 and 1200; measured with
# llama-cpp-python 0.3.36. Every string/array bound in the schema is clamped to these.
GRAMMAR_MAX_STRING_CHARS = 1000
GRAMMAR_MAX_ITEMS = 64


def bounded_schema(schema: Any, max_string: int = ARG_STRING_MAX_CHARS, max_items: int = ARG_ARRAY_MAX_ITEMS) -> Any:
    """A copy of a JSON schema with maxLength / maxItems added where the schema sets none,
    and bounds above what llama.cpp's grammar parser accepts clamped to its limits."""
    if not isinstance(schema, dict):
        return schema
    out = copy.deepcopy(schema)
    _bound_in_place(out, max_string, max_items)
    return out


def _bound_in_place(node: dict[str, Any], max_string: int, max_items: int) -> None:
    types = node.get("type")
    types = set(types) if isinstance(types, list) else {types}
    free_form = not any(k in node for k in ("enum", "const", "pattern", "format"))
    if "string" in types and free_form:
        node.setdefault("maxLength", max_string)
        node["minLength"] = min(int(node.get("minLength", 0)), GRAMMAR_MAX_STRING_CHARS)
        node["maxLength"] = min(max(int(node["maxLength"]), node["minLength"]), GRAMMAR_MAX_STRING_CHARS)
    if "array" in types and "prefixItems" not in node:
        node.setdefault("maxItems", max_items)
        node["minItems"] = min(int(node.get("minItems", 0)), GRAMMAR_MAX_ITEMS)
        node["maxItems"] = min(max(int(node["maxItems"]), node["minItems"]), GRAMMAR_MAX_ITEMS)
    for key in ("properties", "$defs", "definitions"):
        for child in (node.get(key) or {}).values():
            if isinstance(child, dict):
                _bound_in_place(child, max_string, max_items)
    for key in ("items", "additionalProperties", "not"):
        if isinstance(node.get(key), dict):
            _bound_in_place(node[key], max_string, max_items)
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        for child in node.get(key) or []:
            if isinstance(child, dict):
                _bound_in_place(child, max_string, max_items)


_TITLE_SCHEMA = {"type": "string", "minLength": 1, "maxLength": TITLE_MAX_CHARS}
_GOAL_SCHEMA = {"type": "string", "minLength": 1, "maxLength": GOAL_MAX_CHARS}


def _task_variant(name: str, args_schema: dict[str, Any], max_deps: int, max_arg_chars: int) -> dict[str, Any]:
    id_schema = {"type": "string", "pattern": GRAMMAR_TASK_ID_PATTERN}
    properties = {
        "id": id_schema,
        "title": _TITLE_SCHEMA,
        "deps": {"type": "array", "items": id_schema, "maxItems": max_deps},
        "tool": {"const": name},
        "args": bounded_schema(args_schema or {"type": "object"}, max_string=max_arg_chars),
    }
    return {
        "type": "object",
        "properties": properties,
        "required": list(TASK_FIELD_ORDER),
        "additionalProperties": False,
    }


def plan_json_schema(
    catalogue: ToolCatalogue, max_tasks: int = 10, max_deps: int = 4, max_arg_chars: int = ARG_STRING_MAX_CHARS
) -> dict[str, Any]:
    """JSON schema of a plan over `catalogue`, bounded everywhere (tasks, deps, strings)."""
    if len(catalogue) == 0:
        raise ValueError("the tool catalogue is empty: nothing to plan with")
    variants = [_task_variant(spec.name, spec.args_schema, max_deps, max_arg_chars) for spec in catalogue]
    task_schema = variants[0] if len(variants) == 1 else {"anyOf": variants}
    return {
        "type": "object",
        "properties": {
            "goal": _GOAL_SCHEMA,
            "tasks": {"type": "array", "items": task_schema, "minItems": 1, "maxItems": max_tasks},
        },
        "required": list(PLAN_FIELD_ORDER),
        "additionalProperties": False,
    }


def canonical_task(task: dict[str, Any]) -> dict[str, Any]:
    """A task dict with its keys in the grammar's emission order (unknown keys last)."""
    ordered = {k: task[k] for k in TASK_FIELD_ORDER if k in task}
    ordered.update({k: v for k, v in task.items() if k not in ordered})
    return ordered


def canonical_plan_json(plan: Any) -> str:
    """The plan serialised exactly as the grammar lets the model write it (key order, one
    space after `,` and `:`), e.g. for fine-tuning targets. Accepts a dict or a Plan."""
    data = plan.model_dump() if hasattr(plan, "model_dump") else dict(plan)
    out = {k: data[k] for k in PLAN_FIELD_ORDER if k in data}
    out["tasks"] = [canonical_task(t) for t in data.get("tasks", [])]
    out.update({k: v for k, v in data.items() if k not in out})
    return json.dumps(out, ensure_ascii=False)


def build_grammar(schema: dict[str, Any]):
    """The llama.cpp grammar for `schema` (raises what llama.cpp raises when it can't)."""
    from llama_cpp import LlamaGrammar

    return LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)


# -- the in-process grammar -----------------------------------------------------------------
def _literal(text: str) -> str:
    """A GBNF string literal matching `text` exactly."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r") + '"'


def _key(name: str) -> str:
    return f'{_literal(json.dumps(name))} space ":" space'


def _deps_rules(k: int) -> list[str]:
    """Rules for task k's deps: a strictly increasing list of ids among t1..t(k-1).

    Increasing order makes duplicates impossible and bounds the list by k-1 without a count."""
    if k == 1:
        return ['plan-deps-1 ::= "[" space "]" space']
    rules = []
    for j in range(k - 1, 0, -1):  # plan-deps-k-from-j: a list starting at tj
        rest = " | ".join(f"plan-deps-{k}-from-{i}" for i in range(j + 1, k))
        tail = f' ("," space ({rest}))?' if rest else ""
        rules.append(f"plan-deps-{k}-from-{j} ::= {_literal(json.dumps(f't{j}'))}{tail}")
    starts = " | ".join(f"plan-deps-{k}-from-{j}" for j in range(1, k))
    rules.append(f'plan-deps-{k} ::= "[" space ({starts})? "]" space')
    return rules


def catalogue_key(catalogue: ToolCatalogue) -> str:
    """A hash of what a plan grammar depends on: the tools' names, argument schemas and declared
    types, in catalogue order (descriptions and risk levels do not change the grammar)."""
    spec = json.dumps([[t.name, t.args_schema, t.input_types, t.output_types] for t in catalogue],
                      sort_keys=True, default=str)
    return hashlib.sha256(spec.encode("utf-8")).hexdigest()


# Plan grammars built so far, per catalogue and bounds: a planner is made per request (and per
# retrieved tool subset), and building the grammar for a large catalogue takes long enough to
# notice (README, Performance). Strings are immutable, so callers share them.
_PLAN_GBNF_CACHE: "OrderedDict[tuple[str, int, int, bool, bool], str]" = OrderedDict()
_PLAN_GBNF_CAPACITY = 32
_PLAN_GBNF_LOCK = threading.Lock()


def plan_gbnf(
    catalogue: ToolCatalogue, max_tasks: int = 10, max_deps: int = 4, max_arg_chars: int = ARG_STRING_MAX_CHARS,
    count_steps: bool = False, typed_links: bool = False,
) -> str:
    """A llama.cpp GBNF grammar for plans: ids t1..tN in order, deps only to earlier tasks
    (strictly increasing, so at most k-1 of them; `max_deps` applies to the JSON schema only).
    `count_steps`: a goal written as numbered steps gets at least one task per step (`_steps_rules`).
    `typed_links`: over a typed catalogue, a task that depends on the task just before it uses a
    tool that accepts that task's output (`_typed_task_rules`; ignored with `count_steps` or an
    untyped catalogue).

    Built once per catalogue and bounds, then served from an in-memory cache."""
    if len(catalogue) == 0:
        raise ValueError("the tool catalogue is empty: nothing to plan with")
    typed_links = _typed_links_apply(catalogue, typed_links, count_steps)
    key = (catalogue_key(catalogue), max_tasks, max_arg_chars, count_steps, typed_links)
    with _PLAN_GBNF_LOCK:
        text = _PLAN_GBNF_CACHE.get(key)
        if text is not None:
            _PLAN_GBNF_CACHE.move_to_end(key)
            return text
    text = build_plan_gbnf(catalogue, max_tasks=max_tasks, max_arg_chars=max_arg_chars, count_steps=count_steps,
                           typed_links=typed_links)
    with _PLAN_GBNF_LOCK:
        _PLAN_GBNF_CACHE[key] = text
        while len(_PLAN_GBNF_CACHE) > _PLAN_GBNF_CAPACITY:
            _PLAN_GBNF_CACHE.popitem(last=False)
    return text


def clear_grammar_cache() -> None:
    """Forget every cached plan grammar (benchmarks time cold builds with it)."""
    with _PLAN_GBNF_LOCK:
        _PLAN_GBNF_CACHE.clear()


def build_plan_gbnf(
    catalogue: ToolCatalogue, max_tasks: int = 10, max_arg_chars: int = ARG_STRING_MAX_CHARS, count_steps: bool = False,
    typed_links: bool = False,
) -> str:
    """`plan_gbnf` without the cache: builds the grammar text every time."""
    from llama_cpp.llama_grammar import SchemaConverter

    if len(catalogue) == 0:
        raise ValueError("the tool catalogue is empty: nothing to plan with")
    conv = SchemaConverter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    goal = conv.visit(_GOAL_SCHEMA, "goal")
    title = conv.visit(_TITLE_SCHEMA, "title")
    rules = []
    args_rules = []
    for i, spec in enumerate(catalogue):
        schema = conv.resolve_refs(bounded_schema(spec.args_schema or {"type": "object"}, max_string=max_arg_chars), f"tool{i}")
        args_rules.append(conv.visit(schema, f"args{i}"))
    converted = conv.format_grammar()
    first_args = _first_task_args(converted, args_rules, rules)
    for prefix, args_of in (("plan-tool", args_rules), ("plan-first-tool", first_args)):
        for i, spec in enumerate(catalogue):
            rules.append(f'{prefix}-{i} ::= {_key("tool")} {_literal(json.dumps(spec.name))} "," space {_key("args")} {args_of[i]}')
        rules.append(f"{prefix} ::= {' | '.join(f'{prefix}-{i}' for i in range(len(catalogue)))}")
    if _typed_links_apply(catalogue, typed_links, count_steps):
        rules.extend(_typed_task_rules(catalogue, max_tasks, title))
        rules.append(
            f'root ::= "{{" space {_key("goal")} {goal} "," space {_key("tasks")} "[" space plan-typed-task-1 "]" space "}}" space'
        )
        return converted + "\n" + "\n".join(rules) + "\n"
    for k in range(1, max_tasks + 1):
        rules.extend(_deps_rules(k))
        rules.append(
            f'plan-task-{k} ::= "{{" space {_key("id")} {_literal(json.dumps(f"t{k}"))} "," space '
            f'{_key("title")} {title} "," space {_key("deps")} plan-deps-{k} "," space '
            f'{"plan-first-tool" if k == 1 else "plan-tool"} "}}" space'
        )
    tasks = "plan-task-1"
    for k in range(max_tasks, 1, -1):
        tasks_tail = f'("," space plan-task-{k}' + (" " + tasks_tail if k < max_tasks else "") + ")?"
    if max_tasks > 1:
        tasks = f"plan-task-1 {tasks_tail}"
    if count_steps:
        rules.extend(_steps_rules(max_tasks, tasks))
    else:
        rules.append(
            f'root ::= "{{" space {_key("goal")} {goal} "," space {_key("tasks")} "[" space {tasks} "]" space "}}" space'
        )
    return converted + "\n" + "\n".join(rules) + "\n"


def _first_task_args(converted: str, args_rules: list[str], rules: list[str]) -> list[str]:
    """The argument rules of the first task: the tools' own, with strings that can not hold a
    `${ID}` placeholder. Task 1 has no deps (the grammar gives it none), so any placeholder in
    its arguments makes the plan invalid — measured: all 13 invalid plans of the shipped adapter
    over TaskBench's held-out split and its renamed catalogue (scale 1.15) were `t1` quoting
    `${t1}`. Appends the copied rules to `rules`; returns the rule name to use per tool."""
    copies, renamed = merge_identical(*copy_with_swapped_rule(parse_rules(converted), args_rules, "char", "char1", "first-"))
    # `char1`: short, as it is spelled up to 1000 times in each string rule
    rules.append(f"char1 ::= {NO_PLACEHOLDER_CHAR}")
    rules.extend(f"{name} ::= {body}" for name, body in copies.items())
    return [renamed[a] for a in args_rules]


# -- one task per numbered step ------------------------------------------------------------
# A planner trained on goals that number the plan's steps ("1) Stabilize the video; 2) Extract
# the audio", agx/training/taskbench.py) sometimes numbers five steps and then writes one task.
# These rules make the count it wrote a floor: a goal that starts "1) " is a list of steps
# separated by "; k) ", and the plan that follows has at least as many tasks as the goal has
# steps. Not exactly as many: measured with the shipped adapter on TaskBench's held-out split,
# "exactly" also cut the plans that named one step and went on to the 3 tasks the request needed
# (node F1 47.03 -> 47.41 but edge F1 3.07 -> 1.97). Any other goal leaves the count free.
STEP_MAX_CHARS = 100
_CHAR = r'[^"\\\x7F\x00-\x1F]'  # a JSON string character that needs no escape
_ESCAPE = r'"\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4})'


def _steps_rules(max_tasks: int, any_count_tasks: str) -> list[str]:
    tasks_key = f'"\\"" space "," space {_key("tasks")} "[" space'
    rules = [
        # step text: no quote, backslash or ";" (";" separates steps; TaskBench's 1,220 step
        # texts have one ";" among them), so where a step ends is never ambiguous
        rf'plan-step-text ::= [^"\\;\x7F\x00-\x1F]{{1,{STEP_MAX_CHARS}}}',
        f"plan-goal-char ::= {_CHAR} | {_ESCAPE}",
        # a goal that does not start with "1)": the task count stays free
        rf'plan-goal-free ::= "\"" ([^"\\1\x7F\x00-\x1F] plan-goal-char{{0,{GOAL_MAX_CHARS - 1}}} '
        rf'| "1" ([^)"\\\x7F\x00-\x1F] plan-goal-char{{0,{GOAL_MAX_CHARS - 2}}})?) "\"" space',
    ]
    for k in range(1, max_tasks + 1):
        # plan-tasks-after-k: nothing, or task k+1 and what may follow it
        rules.append(f'plan-tasks-after-{k} ::= ("," space plan-task-{k + 1} plan-tasks-after-{k + 1})?'
                     if k < max_tasks else f'plan-tasks-after-{k} ::= ""')
        at_least = " ".join(["plan-task-1", *(f'"," space plan-task-{j}' for j in range(2, k + 1))])
        close = f'{tasks_key} {at_least} plan-tasks-after-{k} "]" space'
        more = f' | "; {k + 1}) " plan-steps-{k + 1}' if k < max_tasks else ""
        rules.append(f"plan-steps-{k} ::= plan-step-text ({close}{more})")
    rules.append(
        f'root ::= "{{" space {_key("goal")} ("\\"1) " plan-steps-1 '
        f'| plan-goal-free "," space {_key("tasks")} "[" space {any_count_tasks} "]" space) "}}" space'
    )
    return rules


# -- typed links ---------------------------------------------------------------------------
# A typed catalogue (TaskBench's tools declare input and output types) says which tool can
# take which task's output: in TaskBench multimedia 713 of its 714 gold links join a tool to
# one that accepts what it gives. A small planner often picks the right first tool and a wrong
# later one (README, Fine-tuning: edge F1 is lost to tool choice); these rules rule out later
# tools that cannot take the earlier output. The grammar carries one fact forward: what the
# task just written gives. Task k, when its deps end with t(k-1), may only use a tool that
# accepts that; deps to older tasks are not checked (the grammar would have to remember every
# earlier task's type, and a chain's link is nearly always to the task just before).


def _typed_links_apply(catalogue: ToolCatalogue, typed_links: bool, count_steps: bool) -> bool:
    """Whether a grammar asked for with `typed_links` gets the typed rules: only over tools that
    declare types, and not together with count_steps' rules."""
    return typed_links and not count_steps and catalogue.typed()


def _typed_deps_rules(k: int) -> list[str]:
    """Task k's deps split in two: `plan-tdeps-k-last` (ending with t(k-1)) and
    `plan-tdeps-k-other` (without it, possibly empty); both strictly increasing as before."""
    if k == 1:
        return ['plan-tdeps-1-other ::= "[" space "]" space']
    rules = []
    for j in range(k - 2, 0, -1):  # lists over t1..t(k-2) starting at tj
        rest = " | ".join(f"plan-tdeps-{k}-from-{i}" for i in range(j + 1, k - 1))
        tail = f' ("," space ({rest}))?' if rest else ""
        rules.append(f"plan-tdeps-{k}-from-{j} ::= {_literal(json.dumps(f't{j}'))}{tail}")
    older = " | ".join(f"plan-tdeps-{k}-from-{j}" for j in range(1, k - 1))
    last = _literal(json.dumps(f"t{k - 1}"))
    lead = f'(({older}) "," space)? ' if older else ""
    rules.append(f'plan-tdeps-{k}-last ::= "[" space {lead}{last} "]" space')
    rules.append(f'plan-tdeps-{k}-other ::= "[" space' + (f" ({older})?" if older else "") + ' "]" space')
    return rules


def _typed_task_rules(catalogue: ToolCatalogue, max_tasks: int, title: str) -> list[str]:
    """Rules `plan-typed-task-1` .. : the task list of a typed plan grammar (tools are the
    `plan-tool-i` rules, in catalogue order)."""
    specs = list(catalogue)
    gives = sorted({s.output_types for s in specs})  # one state per distinct output
    state = {g: f"g{n}" for n, g in enumerate(gives)}
    rules: list[str] = []

    def tools_rule(accepting: tuple[str, ...] | None, out: tuple[str, ...], first: bool = False) -> str | None:
        """Name of a rule: the tools that give `out` and accept `accepting` (None: any); `first`:
        with the first task's argument rules (plan-first-tool-i)."""
        picked = [i for i, s in enumerate(specs) if s.output_types == out and (accepting is None or s.accepts(accepting))]
        if not picked:
            return None
        key = "first" if first else "any" if accepting is None else state[accepting]
        tool = "plan-first-tool" if first else "plan-tool"
        name = f"plan-ttools-{key}-{state[out]}"
        rules.append(f"{name} ::= {' | '.join(f'{tool}-{i}' for i in picked)}")
        return name

    by_input: dict[str, list[tuple[str, str]]] = {}
    for accepting in [None, *gives]:
        key = "any" if accepting is None else state[accepting]
        by_input[key] = [(r, state[out]) for out in gives if (r := tools_rule(accepting, out)) is not None]
    by_input["first"] = [(r, state[out]) for out in gives if (r := tools_rule(None, out, first=True)) is not None]

    def tool_then_rest(k: int, key: str) -> str:
        return " | ".join(f'{r} "}}" space plan-typed-after-{k}-{g}' for r, g in by_input[key])

    for k in range(1, max_tasks + 1):
        rules.extend(_typed_deps_rules(k))
        for g in state.values():
            more = f'("," space plan-typed-task-{k + 1}-{g})?' if k < max_tasks else '""'
            rules.append(f"plan-typed-after-{k}-{g} ::= {more}")
        head = f'"{{" space {_key("id")} {_literal(json.dumps(f"t{k}"))} "," space {_key("title")} {title} "," space {_key("deps")}'
        if k == 1:
            rules.append(f'plan-typed-task-1 ::= {head} plan-tdeps-1-other "," space ({tool_then_rest(1, "first")})')
            continue
        for g in state.values():
            branches = [f'plan-tdeps-{k}-other "," space ({tool_then_rest(k, "any")})']
            if by_input[g]:
                branches.append(f'plan-tdeps-{k}-last "," space ({tool_then_rest(k, g)})')
            rules.append(f"plan-typed-task-{k}-{g} ::= {head} ({' | '.join(branches)})")
    return rules
