"""The first task's arguments can not hold a `${ID}` placeholder (schema_grammar._first_task_args):
task 1 has no deps, so validation would reject any placeholder there — the shipped adapter's only
kind of invalid plan on TaskBench's held-out split (`t1` quoting `${t1}`).

Checked as llama.cpp applies the grammar while decoding (the `accepts` fixture: the bundled
model's vocabulary and llama.cpp's grammar sampler, token by token), and against validation."""

from __future__ import annotations

import json

import pytest

from agx.execution.builtin_tools import builtin_catalogue
from agx.planning.gbnf_rules import copy_with_swapped_rule, merge_identical, parse_rules, rename_refs, rule_refs
from agx.planning.schema_grammar import build_plan_gbnf, canonical_plan_json
from agx.planning.tools import load_catalogue_file
from agx.planning.validate import validate_plan


def _plan(*tasks: tuple[str, list[str], dict]) -> str:
    return canonical_plan_json({"goal": "g", "tasks": [
        {"id": f"t{k}", "title": f"step {k}", "deps": deps, "tool": tool, "args": args}
        for k, (tool, deps, args) in enumerate(tasks, start=1)]})


def _placeholder_errors(text: str) -> list[str]:
    catalogue = builtin_catalogue()
    return [e for e in validate_plan(json.loads(text), catalogue).errors if "${" in e]


@pytest.mark.parametrize("prompt, valid", [
    ("Explain this code: ${t1}", False),   # the bundled model's own mistake (README, first plan)
    ("Use ${HOME} here", False),           # any ${name} is read as a placeholder by validation
    ("Say ${t2}", False),
    ("${${t1}", False),                    # what the shipped adapter wrote when ${t1} was refused
    ("A price of $5 and {braces}", True),  # a dollar or a brace alone is plain text
    ("Shell positional ${1}", True),       # not a placeholder: ids start with a letter
    ("pay in $ or EUR", True),
])
def test_first_task_strings_hold_no_placeholder_and_agree_with_validation(accepts, prompt, valid):
    grammar = build_plan_gbnf(builtin_catalogue())
    first = _plan(("ask_model", [], {"prompt": prompt}))
    assert accepts(grammar, first) is valid
    assert (not _placeholder_errors(first)) is valid


def test_later_tasks_still_quote_their_deps(accepts):
    for typed in (False, True):  # the built-in tools are untyped: both grammars are the plain one
        grammar = build_plan_gbnf(builtin_catalogue(), typed_links=typed)
        later = _plan(("read_files", [], {"paths": ["src/app.py"]}), ("ask_model", ["t1"], {"prompt": "Explain: ${t1}"}))
        assert accepts(grammar, later) and not _placeholder_errors(later)


def test_typed_grammar_first_task_too(accepts, tmp_path):
    inputs = {"type": "object", "properties": {"inputs": {"type": "array", "items": {"type": "string"}}},
              "required": ["inputs"], "additionalProperties": False}
    tools = [{"name": "Video-to-Audio", "description": "Extracts sound.", "args_schema": inputs,
              "input_types": ["video"], "output_types": ["audio"]},
             {"name": "Audio-to-Text", "description": "Transcribes.", "args_schema": inputs,
              "input_types": ["audio"], "output_types": ["text"]}]
    (tmp_path / "tools.json").write_text(json.dumps(tools))
    grammar = build_plan_gbnf(load_catalogue_file(tmp_path / "tools.json"), typed_links=True)
    assert "plan-typed-task-1" in grammar
    assert not accepts(grammar, _plan(("Video-to-Audio", [], {"inputs": ["${t1}"]})))
    assert accepts(grammar, _plan(("Video-to-Audio", [], {"inputs": ["clip.mp4"]}),
                                  ("Audio-to-Text", ["t1"], {"inputs": ["${t1}"]})))


def test_rule_copies_swap_one_rule_and_share_the_rest():
    rules = parse_rules("\n".join([
        'char ::= [^"\\\\]',
        'str ::= "\\"" char{0,3} "\\"" space',
        'value ::= str | obj | "null"',
        'obj ::= "{" (str ":" value)? "}"',  # recursive through value
        'num ::= [0-9]+',
        'args ::= "{" "\\"n\\":" num "," "\\"s\\":" value "}"',
        'space ::= " "?',
    ]))
    assert rule_refs(rules["str"]) == {"char", "space"}  # "\"" and {0,3} are not references
    assert rule_refs('"[char]" [a-z] x-1') == {"x-1"}
    copies, renamed = copy_with_swapped_rule(rules, ["args", "num"], "char", "char1", "f-")
    assert renamed == {"args": "f-args", "num": "num"}  # num never reaches char: shared
    assert set(copies) == {"f-args", "f-value", "f-obj", "f-str"}
    assert copies["f-str"] == '"\\"" char1{0,3} "\\"" space'
    assert copies["f-obj"] == '"{" (f-str ":" f-value)? "}"'
    assert rename_refs('"value" value', {"value": "v2"}) == '"value" v2'
    # Alike copies merge (children first, then the parents they made alike); roots follow.
    merged, roots = merge_identical({"a-s": "char1 x", "b-s": "char1 x", "a": '"{" a-s "}"', "b": '"{" b-s "}"', "c": "a b"},
                                    {"one": "a", "two": "b"})
    assert merged == {"a-s": "char1 x", "a": '"{" a-s "}"', "c": "a a"} and roots == {"one": "a", "two": "a"}


def test_the_first_task_copies_cost_little():
    """Merged, the copies add a little to the grammar (TaskBench's 40 tools: 377 -> 393 KiB),
    not a second full set of argument rules."""
    rules = parse_rules(build_plan_gbnf(builtin_catalogue()))
    first = sum(len(body) for name, body in rules.items() if name.startswith("first-"))
    plain = sum(len(body) for name, body in rules.items() if name.startswith("args"))
    assert 0 < first < 0.5 * plain
