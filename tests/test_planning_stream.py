"""The incremental plan parser: tasks come out as soon as their object closes, whatever the chunking."""

from __future__ import annotations

import json

from agx.planning.schema_grammar import canonical_plan_json
from agx.planning.stream_parser import PlanStreamParser, parse_plan_text

PLAN = {
    "goal": 'Fix "greet" {and} [tests]',
    "tasks": [
        {"id": "t1", "title": "Read {app}", "deps": [], "tool": "read_files", "args": {"paths": ["src/app.py"]}},
        {"id": "t2", "title": 'Say \\"hi\\" ]}', "deps": ["t1"], "tool": "ask_model",
         "args": {"prompt": "Use ${t1}\nthen answer \u00e9 {\"nested\": [1, {\"x\": 2}]}"}},
        {"id": "t3", "title": "Commit", "deps": ["t1", "t2"], "tool": "git_commit", "args": {"message": "done"}},
    ],
}
TEXT = canonical_plan_json(PLAN)


def test_every_two_chunk_split_yields_the_same_tasks_and_goal():
    for cut in range(len(TEXT) + 1):
        parser = PlanStreamParser()
        got = parser.feed(TEXT[:cut]) + parser.feed(TEXT[cut:])
        assert got == PLAN["tasks"], f"split at {cut}"
        assert parser.goal == PLAN["goal"], f"split at {cut}"
        assert parser.errors == []


def test_char_by_char_emits_each_task_exactly_when_its_brace_closes():
    parser = PlanStreamParser()
    emitted_at = []
    for i, ch in enumerate(TEXT):
        for task in parser.feed(ch):
            emitted_at.append((i, task["id"]))
    assert [tid for _, tid in emitted_at] == ["t1", "t2", "t3"]
    for i, tid in emitted_at:
        assert TEXT[i] == "}"
        # the text up to here contains the whole task and the next task has not started
        assert json.dumps(tid) in TEXT[: i + 1]
    # t1 is out long before the plan is complete
    assert emitted_at[0][0] < len(TEXT) // 2


def test_goal_after_tasks_and_whitespace_and_raw_newlines_in_strings():
    text = '\n { "tasks" : [ {"id": "a", "title": "x\ny", "deps": [], "tool": "shell", "args": {"command": "ls"}} ] ,\n "goal" : "late" } '
    parser = PlanStreamParser()
    tasks = [t for ch in text for t in parser.feed(ch)]
    assert [t["title"] for t in tasks] == ["x\ny"]  # llama.cpp's grammar allows raw newlines
    assert parser.goal == "late"


def test_objects_outside_the_tasks_array_are_not_tasks():
    text = '{"goal": "g", "meta": {"tasks": [{"id": "no"}]}, "tasks": [{"id": "yes"}]}'
    parser = PlanStreamParser()
    assert parser.feed(text) == [{"id": "yes"}]


def test_a_truncated_stream_keeps_the_tasks_already_closed():
    cut = TEXT.index('{"id": "t3"') + 10
    parser = PlanStreamParser()
    assert [t["id"] for t in parser.feed(TEXT[:cut])] == ["t1", "t2"]
    value, error = parse_plan_text(TEXT[:cut])
    assert value is None and error.startswith("the output is not valid JSON")


def test_parse_plan_text_reports_empty_output():
    assert parse_plan_text("  ") == (None, "the output is empty")
    assert parse_plan_text(TEXT)[0] == PLAN
