"""TaskBench-style plan metrics: set F1, lenient parsing, unparseable outputs as empty predictions."""

from __future__ import annotations

import json

import pytest

from agx.training.metrics import gold_of, parse_plan_output, plan_graph, score_sample, set_f1, summarize


def _plan(*tasks):
    return {"goal": "g", "tasks": [{"id": i, "title": i, "tool": tool, "deps": deps, "args": {}} for i, tool, deps in tasks]}


def test_set_f1_definition():
    assert set_f1({"a", "b"}, {"a", "b"}) == 1.0
    assert set_f1({"a"}, {"a", "b"}) == pytest.approx(2 / 3)
    assert set_f1({"c"}, {"a"}) == 0.0
    assert set_f1(set(), {"a"}) == 0.0
    assert set_f1(set(), set()) == 1.0
    # Sets, as TaskBench scores: a repeated tool name counts once.
    assert set_f1(["a", "a"], ["a"]) == 1.0


def test_parse_plan_output_tolerates_prose_and_rejects_non_plans():
    plan = _plan(("t1", "search", []))
    assert parse_plan_output("Sure!\n```json\n" + json.dumps(plan) + "\n```") == plan
    assert parse_plan_output('{"goal": "x", "tasks": [') is None  # truncated by max_tokens
    assert parse_plan_output('{"goal": "x"}') is None  # no tasks list
    assert parse_plan_output("no json here") is None
    # A raw newline inside a string (llama.cpp's grammar allows it) parses, as in agx's planner.
    raw = '{"goal": "x", "tasks": [{"id": "t1", "title": "a\nb", "deps": [], "tool": "code", "args": {}}]}'
    assert parse_plan_output(raw)["tasks"][0]["title"] == "a\nb"


def test_plan_graph_edges_are_tool_pairs_from_deps():
    plan = _plan(("t1", "read_files", []), ("t2", "search", []), ("t3", "ask_model", ["t1", "t2", "ghost"]))
    nodes, edges = plan_graph(plan)
    assert nodes == ["read_files", "search", "ask_model"]
    assert edges == [("read_files", "ask_model"), ("search", "ask_model")]  # unknown dep ignored


def test_score_and_summary_count_unparseable_as_empty():
    gold_nodes, gold_edges = ["A", "B"], [("A", "B")]
    good = score_sample(_plan(("t1", "A", []), ("t2", "B", ["t1"])), True, gold_nodes, gold_edges)
    half = score_sample(_plan(("t1", "A", [])), True, gold_nodes, gold_edges)
    broken = score_sample(None, False, gold_nodes, gold_edges)
    single = score_sample(_plan(("t1", "A", [])), True, ["A"], [])
    assert (good.node_f1, good.edge_f1) == (1.0, 1.0)
    assert half.node_f1 == pytest.approx(2 / 3) and half.edge_f1 == 0.0
    assert (broken.parseable, broken.node_f1, broken.edge_f1) == (False, 0.0, 0.0)
    assert single.edge_f1 is None  # no gold edges: not part of the edge average

    s = summarize([good, half, broken, single])
    assert s.samples == 4 and s.edge_samples == 3
    assert s.parseable_pct == 75.0 and s.valid_pct == 75.0
    assert s.node_f1 == pytest.approx(100 * (1 + 2 / 3 + 0 + 1) / 4)
    assert s.edge_f1 == pytest.approx(100 / 3)
    # micro: node hits 2+1+0+1=4, predicted 2+1+0+1=4, gold 2+2+2+1=7
    assert s.node_f1_micro == pytest.approx(100 * 2 * (4 / 4) * (4 / 7) / (4 / 4 + 4 / 7))


def test_gold_prefers_taskbench_graph_over_converted_plan():
    record = {"plan": _plan(("t1", "A", [])), "gold": {"nodes": ["A", "B"], "links": [["A", "B"]]}}
    assert gold_of(record) == (["A", "B"], [("A", "B")])
    assert gold_of({"plan": _plan(("t1", "A", []), ("t2", "B", ["t1"]))}) == (["A", "B"], [("A", "B")])


def test_plan_shapes_splits_node_f1_by_request_size():
    from agx.training.metrics import plan_shapes

    results = [
        {"gold_nodes": ["A"], "pred_nodes": ["A"], "node_f1": 1.0},
        {"gold_nodes": ["A"], "pred_nodes": ["B", "C"], "node_f1": 0.0},
        {"gold_nodes": ["A", "B", "C"], "pred_nodes": ["A"], "node_f1": 0.5},  # one task for three tools
        {"gold_nodes": ["A", "B"], "pred_nodes": ["A", "A", "B"], "node_f1": 1.0},
        {"gold_nodes": ["D", "D"], "pred_nodes": [], "node_f1": 0.0},  # one distinct gold tool: single
    ]
    shapes = plan_shapes(results)
    assert shapes["single_tool"] == 3 and shapes["multi_tool"] == 2
    assert shapes["single_tool_node_f1"] == pytest.approx(100 / 3, abs=0.01)
    assert shapes["multi_tool_node_f1"] == 75.0
    assert shapes["multi_tool_planned_as_one_task"] == 1
    assert shapes["multi_tool_tools_predicted"] == 1.5 and shapes["multi_tool_tools_gold"] == 2.5


def test_edge_losses_says_why_each_gold_edge_was_missed():
    from agx.training.metrics import edge_losses

    results = [
        # gold A->B->C; plan A->B and C->B: A->B a hit, B->C planned the other way round
        {"gold_nodes": ["A", "B", "C"], "gold_edges": [["A", "B"], ["B", "C"]],
         "pred_nodes": ["A", "B", "C"], "pred_edges": [["A", "B"], ["C", "B"]]},
        # gold A->C; plan A->B->C: A reaches C through B (indirect); A->B and B->C are not gold
        {"gold_nodes": ["A", "C"], "gold_edges": [["A", "C"]],
         "pred_nodes": ["A", "B", "C"], "pred_edges": [["A", "B"], ["B", "C"]]},
        # gold A->B; plan of A and B with no deps: unwired, and a multi-task plan without deps
        {"gold_nodes": ["A", "B"], "gold_edges": [["A", "B"]], "pred_nodes": ["A", "B"], "pred_edges": []},
        # gold A->B; plan of A alone: the target tool is missing
        {"gold_nodes": ["A", "B"], "gold_edges": [["A", "B"]], "pred_nodes": ["A"], "pred_edges": []},
        # a single-tool request has no gold edges: not counted
        {"gold_nodes": ["A"], "gold_edges": [], "pred_nodes": ["A", "B"], "pred_edges": [["A", "B"]]},
    ]
    losses = edge_losses(results)
    assert losses["edge_samples"] == 4 and losses["gold_edges"] == 5
    assert (losses["hit"], losses["reversed"], losses["indirect"], losses["unwired"], losses["tool_missing"]) == (1, 1, 1, 1, 1)
    assert losses["pred_edges"] == 4
    assert losses["wrong_pair"] == 1  # C->B: both gold tools
    assert losses["wrong_tool"] == 2  # A->B and B->C in the second request: B is not a gold tool
    assert losses["multi_task_plans_without_deps"] == 1


def test_plan_writes_and_write_losses_say_whether_the_edit_gets_the_right_files():
    from agx.training.metrics import plan_writes, write_losses

    plan = {"tasks": [
        {"id": "t1", "tool": "read_files", "deps": [], "args": {"paths": ["src/a.py", "tests/test_a.py"]}},
        {"id": "t2", "tool": "code", "deps": ["t1"], "args": {"paths": ["src/a.py", "src/a.py"], "instruction": "x"}},
        {"id": "t3", "tool": "edit_file", "deps": ["t2"], "args": {"path": "README.md", "edits": []}},
        {"id": "t4", "tool": "run_tests", "deps": ["t3"], "args": {}},
    ]}
    assert plan_writes(plan) == ["README.md", "src/a.py"]  # reads and test runs write nothing
    assert plan_writes(None) == []
    results = [
        {"gold_writes": ["src/a.py", "tests/test_a.py"], "pred_writes": ["src/a.py"]},  # the test file missing
        {"gold_writes": ["src/a.py"], "pred_writes": ["src/a.py", "tests/test_a.py"]},  # one extra
        {"gold_writes": ["src/a.py"], "pred_writes": ["src/a.py"]},
        {"gold_writes": [], "pred_writes": ["x.py"]},  # a request whose gold writes nothing: not counted
    ]
    assert write_losses(results) == {"requests_that_write": 3, "exact": 1, "missing_a_file": 1, "extra_file": 1}
