"""Plan validation (each invalid class, with its message), the schema/grammar, and the prompt."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agx.execution.builtin_tools import builtin_catalogue
from agx.planning.plan import Plan
from agx.planning.prompt import build_plan_messages, repair_messages, repo_context
from agx.planning.schema_grammar import build_grammar, canonical_plan_json, plan_gbnf, plan_json_schema
from agx.planning.tools import load_catalogue_file
from agx.planning.validate import validate_plan

# shared/ lies beside the checkout (as in CI's clone); the tool catalogue file also ships in it.
TASKBENCH = Path(__file__).resolve().parents[2] / "shared" / "data" / "taskbench" / "multimedia" / "tool_desc.json"


def _need_taskbench() -> None:
    if not TASKBENCH.is_file():
        pytest.skip(f"TaskBench data not present at {TASKBENCH} (shared/ is not beside this checkout)")
CAT = builtin_catalogue()


def good_plan() -> dict:
    return {
        "goal": "Explain and test greet",
        "tasks": [
            {"id": "t1", "title": "Read app", "deps": [], "tool": "read_files", "args": {"paths": ["src/app.py"]}},
            {"id": "t2", "title": "Find tests", "deps": [], "tool": "search", "args": {"pattern": "def test_"}},
            {"id": "t3", "title": "Explain", "deps": ["t1", "t2"], "tool": "ask_model",
             "args": {"prompt": "Code: ${t1}\nTests: ${t2}"}},
            {"id": "t4", "title": "Run tests", "deps": ["t3"], "tool": "run_tests", "args": {}},
        ],
    }


def errors_of(plan) -> list[str]:
    return validate_plan(plan, CAT).errors


def test_valid_plan_has_levels_critical_path_and_width():
    report = validate_plan(good_plan(), CAT)
    assert report.ok and report.errors == []
    assert isinstance(report.plan, Plan)
    assert report.levels == [["t1", "t2"], ["t3"], ["t4"]]
    assert report.critical_path == 3
    assert report.width == 2
    # a Plan object validates the same as its dict
    assert validate_plan(report.plan, CAT).levels == report.levels


def mutate(fn) -> dict:
    plan = good_plan()
    fn(plan)
    return plan


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda p: p["tasks"][1].update(id="t1"), "task 't1': duplicate id (tasks #1 and #2)"),
        (lambda p: p["tasks"][2]["deps"].append("t9"), "task 't3': depends on unknown task 't9'"),
        (lambda p: p["tasks"][3]["deps"].append("t4"), "task 't4': depends on itself"),
        (lambda p: p["tasks"][0]["deps"].append("t3"),
         "task 't1': dependency cycle t1 -> t3 -> t2 -> t1" if False else "dependency cycle"),
        (lambda p: p["tasks"][1].update(tool="teleport"), "task 't2': unknown tool 'teleport' (known: read_files"),
        (lambda p: p["tasks"][0].update(args={"paths": []}), "task 't1': args.paths: [] should be non-empty"),
        (lambda p: p["tasks"][1].update(args={}), "task 't2': args: 'pattern' is a required property"),
        (lambda p: p["tasks"][1]["args"].update(flags=1), "task 't2': args: Additional properties are not allowed"),
        (lambda p: p["tasks"][0]["args"].update(paths=["a", 3]), "task 't1': args.paths[1]: 3 is not of type 'string'"),
        (lambda p: p["tasks"][2]["deps"].remove("t2"), "task 't3': argument uses ${t2} but 't2' is not in its deps"),
        (lambda p: p["tasks"][3]["args"].update(command="echo ${t7}"), "task 't4': argument uses ${t7} but there is no task 't7'"),
        (lambda p: p["tasks"][2]["deps"].append("t1"), "task 't3': lists dependency 't1' twice"),
        (lambda p: p["tasks"][0].update(id="1 bad"), "task '1 bad': invalid id"),
        (lambda p: p.update(tasks=[]), "the plan has no tasks"),
        (lambda p: p.pop("goal"), "the plan needs a non-empty 'goal' string"),
        (lambda p: p.update(extra=1), "the plan has unknown fields: extra"),
        (lambda p: p["tasks"][1].pop("tool"), "task 't2': tool: Field required"),
        (lambda p: p["tasks"][1].update(deps="t1"), "task 't2': deps: Input should be a valid list"),
    ],
)
def test_each_invalid_class_is_rejected_with_its_message(change, expected):
    errors = errors_of(mutate(change))
    assert errors, "expected the plan to be rejected"
    assert any(expected in e for e in errors), errors


def test_cycle_message_names_the_cycle_in_dependency_order():
    plan = mutate(lambda p: p["tasks"][0]["deps"].append("t3"))  # t1 -> t3 -> (t1, t2) -> t1
    report = validate_plan(plan, CAT)
    cycles = [e for e in report.errors if "dependency cycle" in e]
    assert "task 't1': dependency cycle t1 -> t3 -> t1 (each task depends on the next)" in cycles
    assert report.levels == [] and report.critical_path == 0


def test_non_object_input_is_reported_not_raised():
    assert validate_plan(["not", "a", "plan"], CAT).errors == [
        "the plan must be a JSON object with 'goal' and 'tasks', got list"
    ]
    assert validate_plan({"goal": "g", "tasks": "x"}, CAT).plan is None


def test_every_error_about_a_task_names_it():
    plan = good_plan()
    plan["tasks"][1].update(tool="nope", deps=["t2", "zz"])
    plan["tasks"][2]["args"]["prompt"] = "${t4}"
    for e in errors_of(plan):
        assert e.startswith("task '"), e


# -- schema and grammar ---------------------------------------------------------------------
@pytest.mark.parametrize("which", ["builtin", "taskbench"])
def test_schema_builds_a_llama_grammar_for_both_catalogues(which):
    if which != "builtin":
        _need_taskbench()
    catalogue = CAT if which == "builtin" else load_catalogue_file(TASKBENCH)
    schema = plan_json_schema(catalogue, max_tasks=6, max_deps=3)
    tasks = schema["properties"]["tasks"]
    assert (tasks["minItems"], tasks["maxItems"]) == (1, 6)
    variants = tasks["items"]["anyOf"]
    assert [v["properties"]["tool"]["const"] for v in variants] == catalogue.names()
    for v in variants:
        assert list(v["properties"]) == ["id", "title", "deps", "tool", "args"]
        assert v["properties"]["deps"]["maxItems"] == 3
    assert build_grammar(schema) is not None
    from llama_cpp import LlamaGrammar

    assert LlamaGrammar.from_string(plan_gbnf(catalogue, max_tasks=6), verbose=False) is not None


def test_grammar_bounds_every_free_string_and_clamps_huge_ones():
    from agx.planning.tools import ToolCatalogue, ToolSpec

    cat = ToolCatalogue.of([ToolSpec("x", "d", {"type": "object", "properties": {
        "a": {"type": "string"}, "b": {"type": "string", "maxLength": 100000},
        "c": {"type": "array", "items": {"type": "string"}}}, "required": ["a"]})])
    args = plan_json_schema(cat)["properties"]["tasks"]["items"]["properties"]["args"]["properties"]
    assert args["a"]["maxLength"] == 1000 and args["b"]["maxLength"] == 1000
    assert args["c"]["maxItems"] == 8 and args["c"]["items"]["maxLength"] == 1000
    # the catalogue's own schema is untouched (validation uses it as declared)
    assert "maxLength" not in cat.get("x").args_schema["properties"]["a"]


SAMPLE_SCRIPT = textwrap.dedent("""
    import json, sys
    from llama_cpp import Llama, LlamaGrammar
    from agx.runtime.bundled import bundled_model_path
    from agx.planning.tools import load_catalogue_file
    from agx.execution.builtin_tools import builtin_catalogue
    from agx.planning.schema_grammar import plan_gbnf, plan_json_schema
    cat = builtin_catalogue() if sys.argv[1] == "builtin" else load_catalogue_file(sys.argv[1])
    llm = Llama(model_path=str(bundled_model_path()), n_ctx=256, n_threads=2, verbose=False)
    for g in (LlamaGrammar.from_json_schema(json.dumps(plan_json_schema(cat)), verbose=False),
              LlamaGrammar.from_string(plan_gbnf(cat), verbose=False),
              LlamaGrammar.from_string(plan_gbnf(cat, count_steps=True), verbose=False)):
        out = llm.create_completion("Plan:", grammar=g, max_tokens=4, temperature=0)
        print(repr(out["choices"][0]["text"]))
""")


@pytest.mark.parametrize("which", ["builtin", str(TASKBENCH)])
def test_grammars_are_accepted_by_llama_cpp_sampling(which):
    # llama.cpp rejects some grammars only when sampling starts (and then the process
    # crashes), so this runs in a child process with the real model.
    if which != "builtin":
        _need_taskbench()
    proc = subprocess.run([sys.executable, "-c", SAMPLE_SCRIPT, which], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    outputs = [eval(line) for line in proc.stdout.splitlines()]
    assert len(outputs) == 3 and all(o.startswith("{") for o in outputs)


def test_canonical_json_uses_emission_order():
    text = canonical_plan_json({"tasks": [{"args": {}, "tool": "run_tests", "deps": [], "title": "T", "id": "t1"}], "goal": "g"})
    assert text == '{"goal": "g", "tasks": [{"id": "t1", "title": "T", "deps": [], "tool": "run_tests", "args": {}}]}'


# -- prompt -----------------------------------------------------------------------------------
def test_plan_messages_are_deterministic_and_carry_catalogue_and_rules(git_repo):
    ctx = repo_context(git_repo)
    a = build_plan_messages("add a test for greet", CAT, ctx)
    b = build_plan_messages("add a test for greet", copy.deepcopy(CAT), repo_context(git_repo))
    assert a == b
    system, user = a
    assert system["role"] == "system" and user["role"] == "user"
    for spec in CAT:
        assert spec.prompt_line() in system["content"]
    assert "${ID}" in system["content"]
    example = system["content"].split("Example plan: ", 1)[1]
    assert validate_plan(json.loads(example), CAT).ok
    assert "add a test for greet" in user["content"] and "src/: app.py" in user["content"]


def test_example_uses_the_loaded_catalogues_own_tools():
    _need_taskbench()
    cat = load_catalogue_file(TASKBENCH)
    system = build_plan_messages("x", cat, None)[0]["content"]
    example = json.loads(system.split("Example plan: ", 1)[1])
    assert validate_plan(example, cat).ok


def test_repair_messages_append_output_and_exact_errors():
    base = build_plan_messages("r", CAT, None)
    msgs = repair_messages(base, '{"bad": 1}', ["task 't1': depends on itself"])
    assert msgs[: len(base)] == base
    assert msgs[-2] == {"role": "assistant", "content": '{"bad": 1}'}
    assert "- task 't1': depends on itself" in msgs[-1]["content"]


def test_repo_context_is_bounded_and_shows_status(git_repo):
    for i in range(300):
        (git_repo / f"file_{i:03d}_{'x' * 40}.txt").write_text("x")
    (git_repo / "README.md").write_text("# demo\n" + "line\n" * 100)
    ctx = repo_context(git_repo)
    assert len(ctx) <= 3000
    assert "more files" in ctx and "Git status:" in ctx and "?? " in ctx
    assert repo_context(git_repo.parent) == ""  # not a repository
