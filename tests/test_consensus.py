"""Sampled plans in `agx eval plans --samples N`: several plans drawn for one request, the one
the others agree with scored beside the greedy one.

The choice rule is pure (agx/training/consensus.py); the draws are real generations of the
bundled model.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from agx.execution.builtin_tools import builtin_catalogue
from agx.planning.plan import Plan
from agx.planning.validate import validate_plan
from agx.training.consensus import consensus_index, plan_shape, similarity
from agx.training.eval_plans import EvalOptions, evaluate_records
from agx.training.metrics import parse_plan_output

CAT = builtin_catalogue()


def plan(*tasks: tuple[str, list[str]]) -> Plan:
    """A plan of tasks t1..tN with these (tool, deps)."""
    return Plan(goal="g", tasks=[{"id": f"t{i}", "title": tool, "tool": tool, "deps": deps}
                                 for i, (tool, deps) in enumerate(tasks, 1)])


READ_CODE_TEST = plan(("read_files", []), ("code", ["t1"]), ("run_tests", ["t2"]))
READ_CODE = plan(("read_files", []), ("code", ["t1"]))
SHELL = plan(("shell", []))


def test_shape_is_tools_and_tool_edges():
    assert plan_shape(READ_CODE_TEST) == (frozenset({"read_files", "code", "run_tests"}),
                                          frozenset({("read_files", "code"), ("code", "run_tests")}))
    assert similarity(plan_shape(READ_CODE_TEST), plan_shape(READ_CODE_TEST)) == 2.0
    assert similarity(plan_shape(READ_CODE_TEST), plan_shape(SHELL)) == 0.0
    # Two of three tools (F1 0.8) and one of two edges (F1 2/3).
    assert similarity(plan_shape(READ_CODE_TEST), plan_shape(READ_CODE)) == pytest.approx(0.8 + 2 / 3)


def test_the_plan_the_others_agree_with_wins():
    # The greedy plan (0) stands alone; two samples agree with each other.
    assert consensus_index([SHELL, READ_CODE_TEST, READ_CODE_TEST, READ_CODE]) == 1
    # The medoid: READ_CODE lies between a plan that then tests and one that then runs a shell.
    read_code_shell = plan(("read_files", []), ("code", ["t1"]), ("shell", ["t2"]))
    assert consensus_index([READ_CODE_TEST, read_code_shell, READ_CODE]) == 2


def test_ties_keep_the_earliest_and_invalid_plans_do_not_compete():
    assert consensus_index([SHELL, READ_CODE]) == 0  # no agreement: the greedy plan stays
    assert consensus_index([None, READ_CODE, None]) == 1  # the only valid one
    assert consensus_index([None, None]) == 0  # none valid: the first, for the repair rounds
    assert consensus_index([]) is None


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_eval_scores_the_consensus_plan_beside_the_greedy_one(pool, tmp_path):
    records = [{"id": "r1", "request": "Run the tests",
                "plan": {"goal": "g", "tasks": [{"id": "t1", "title": "tests", "tool": "run_tests", "deps": [], "args": {}}]}},
               {"id": "r2", "request": "Show the README",
                "plan": {"goal": "g", "tasks": [{"id": "t1", "title": "read", "tool": "read_files", "deps": [],
                                                  "args": {"paths": ["README.md"]}}]}}]
    engine = pool.engine("delta")
    greedy, greedy_results = evaluate_records(records, engine, tmp_path, EvalOptions(max_tokens=256))
    summary, results = evaluate_records(records, engine, tmp_path, EvalOptions(max_tokens=256, samples=3))
    for single, r in zip(greedy_results, results):
        # Candidate 0 is the plain eval's greedy plan, scored the same.
        assert r["greedy_output"] == single["output"] and r["greedy_node_f1"] == single["node_f1"]
        assert r["samples"] == 3 and 0 <= r["chosen_sample"] < 3
        if r["chosen_sample"] == 0:
            assert r["output"] == single["output"]
        candidates = []
        for text in [r["greedy_output"], *r["sample_outputs"]]:
            value = parse_plan_output(text)
            report = validate_plan(value, CAT) if value is not None else None
            candidates.append(report.plan if report is not None and report.ok else None)
        assert r["chosen_sample"] == consensus_index(candidates)
    assert summary.extra["greedy"].node_f1 == pytest.approx(greedy.node_f1)
    assert summary.extra["chose_a_sample"] == sum(1 for r in results if r["chosen_sample"])
    # Seeded draws: the same run again gives the same plans.
    _, again = evaluate_records(records, engine, tmp_path, EvalOptions(max_tokens=256, samples=3))
    assert [r["sample_outputs"] for r in again] == [r["sample_outputs"] for r in results]


def test_cli_rejects_a_bad_sample_count(git_repo):
    for args in (["eval", "plans", "x.jsonl", "--samples", "0"], ["eval", "plans", "x.jsonl", "--samples", "17"]):
        proc = subprocess.run([sys.executable, "-m", "agx", *args], cwd=git_repo, capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert "--samples must be between 1 and 16" in proc.stderr and "Traceback" not in proc.stderr
