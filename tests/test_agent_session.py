"""The agent loop (agx/agent/session.py) on real git repos, real processes and real commits.

Loop control is tested with a scripted planner standing in for Delta (the bundled 135M model
cannot be made to write a chosen plan); it returns hand-written plans exactly as the Planner
does, tasks streamed first. The bundled model drives the loop end to end in test_run_json.
"""

from __future__ import annotations

import asyncio
import subprocess

import pytest

from agx.agent.events import RoundObserved, RoundStarted, SessionFinished
from agx.agent.session import AgentSession, prefix_plan, summary_text
from agx.events import TaskAdded, TaskStarted
from agx.execution.builtin_tools import builtin_catalogue
from agx.execution.policy import ApprovalMode, Policy
from agx.planning.plan import Plan
from agx.planning.planner import PlanResult


class ScriptedPlanner:
    """Delta's stand-in: one hand-written plan per round; none left means Delta has no plan."""

    def __init__(self, *plans: dict):
        self.plans = list(plans)
        self.requests: list[str] = []

    def plan(self, request, on_event=None, cancel=None, plan_id=None):
        self.requests.append(request)
        if not self.plans:
            return PlanResult(plan_id, request, None, None, errors=["no plan left"])
        plan = Plan.model_validate(self.plans.pop(0))
        for t in plan.tasks:
            on_event(TaskAdded(plan_id, task=t.model_dump()))
        return PlanResult(plan_id, request, plan, plan.model_dump())


def config_for(repo, *overrides):
    from agx.config import load_config

    return load_config(repo, overrides=list(overrides), use_user_file=False).config


def git(repo, *args) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def write(path, content, tid="t1", deps=()):
    return {"id": tid, "title": f"write {path}", "tool": "write_file", "args": {"path": path, "content": content},
            "deps": list(deps)}


CHECK = "grep -qx 2 value.txt || { echo \"value is wrong: $(cat value.txt)\"; exit 1; }"


def check_task(tid="t2", deps=("t1",)):
    return {"id": tid, "title": "run tests", "tool": "run_tests", "args": {"command": CHECK}, "deps": list(deps)}


def run_session(repo, planner, *overrides, policy=None, approve=None, request="make value 2", **kw):
    events = []
    session = AgentSession(repo, config_for(repo, *overrides), catalogue=builtin_catalogue(),
                           policy=policy or Policy(ApprovalMode.ALL), planner=planner, approve=approve,
                           on_event=events.append, **kw)
    outcome = asyncio.run(session.run(request))
    return outcome, events, session


def test_success_in_one_round_ends_the_loop_with_a_summary(git_repo):
    planner = ScriptedPlanner({"goal": "g", "tasks": [write("value.txt", "2\n"), check_task()]})
    outcome, events, _ = run_session(git_repo, planner)
    assert outcome.reason == "done" and outcome.rounds == 1 and len(planner.requests) == 1
    assert isinstance(events[-1], SessionFinished) and events[-1].summary == outcome.summary
    s = outcome.summary
    assert s["files"] == [{"path": "value.txt", "change": "added"}] and s["tests"][0]["ok"] is True
    assert s["apply"] == f"agx apply {outcome.plan_id}"
    assert "goal met after 1 round" in summary_text(s) and "value.txt (added)" in summary_text(s)
    assert not (git_repo / "value.txt").exists()  # the user's checkout is untouched until apply


def test_a_failing_test_task_triggers_a_second_round_that_sees_the_output_and_commits_stack(git_repo):
    planner = ScriptedPlanner(
        {"goal": "g", "tasks": [write("value.txt", "1\n"), check_task()]},
        {"goal": "g", "tasks": [write("value.txt", "2\n"), check_task()]},
    )
    outcome, events, session = run_session(git_repo, planner)
    assert outcome.reason == "done" and outcome.rounds == 2
    assert "value is wrong: 1" in planner.requests[1] and "Round 2 of at most 3" in planner.requests[1]
    rounds = [e for e in events if isinstance(e, RoundStarted)]
    assert [r.round for r in rounds] == [1, 2] and rounds[1].request == planner.requests[1]
    observed = [e for e in events if isinstance(e, RoundObserved)]
    assert [o.ok for o in observed] == [False, True] and observed[0].failed[0]["task"] == "t2"
    # Both rounds' commits are on the one plan branch, the second on top of the first.
    branch = session.run_handle.record.branch
    log = git(git_repo, "log", "--format=%s", f"{outcome.summary['base_commit']}..{branch}").splitlines()
    assert log == ["write value.txt", "write value.txt"]
    assert git(git_repo, "show", f"{branch}:value.txt") == "2"
    assert git(git_repo, "show", f"{branch}~1:value.txt") == "1"
    assert {"t1", "t2", "r2-t1", "r2-t2"} <= set(session.run_handle.record.tasks)


def test_the_round_limit_ends_the_loop(git_repo):
    planner = ScriptedPlanner(
        {"goal": "g", "tasks": [write("value.txt", "1\n"), check_task()]},
        {"goal": "g", "tasks": [write("value.txt", "3\n"), check_task()]},
        {"goal": "g", "tasks": [write("value.txt", "2\n"), check_task()]},
    )
    outcome, events, _ = run_session(git_repo, planner, "agent.max_rounds=2")
    assert outcome.reason == "round_limit" and outcome.rounds == 2 and len(planner.requests) == 2
    assert outcome.summary["failed"][0]["error"].startswith("tests failed")
    assert "stopped at the round limit after 2 rounds" in summary_text(outcome.summary)


def test_delta_repeating_its_plan_or_having_none_ends_the_loop_as_gave_up(git_repo):
    same = {"goal": "g", "tasks": [write("value.txt", "1\n"), check_task()]}
    outcome, _, _ = run_session(git_repo, ScriptedPlanner(same, same))
    assert outcome.reason == "gave_up" and outcome.rounds == 1
    assert outcome.summary["errors"] == [] and outcome.summary["apply"]  # round 1's commit stays reviewable
    outcome, _, _ = run_session(git_repo, ScriptedPlanner(same))
    assert outcome.reason == "gave_up"


def test_the_users_stop_ends_the_loop_at_once(git_repo):
    planner = ScriptedPlanner({"goal": "g", "tasks": [{"id": "t1", "title": "wait", "tool": "shell",
                                                        "args": {"command": "sleep 30"}, "deps": []}]})
    holder = {}

    def on_event(e):
        if isinstance(e, TaskStarted):
            asyncio.get_running_loop().call_later(0.3, holder["session"].stop)

    session = AgentSession(git_repo, config_for(git_repo), catalogue=builtin_catalogue(),
                           policy=Policy(ApprovalMode.ALL), planner=planner, on_event=on_event)
    holder["session"] = session
    import time

    t0 = time.perf_counter()
    outcome = asyncio.run(session.run("wait"))
    assert outcome.reason == "stopped" and time.perf_counter() - t0 < 15
    assert len(planner.requests) == 1 and session.run_handle.record.state == "cancelled"


def test_the_approval_callback_decides_and_a_refusal_stops_the_loop(git_repo):
    asked = []

    async def approve_all(executor, ids):
        asked.append(list(ids))
        return list(ids), []

    planner = ScriptedPlanner({"goal": "g", "tasks": [write("value.txt", "2\n"), check_task()]})
    outcome, _, _ = run_session(git_repo, planner, policy=Policy(ApprovalMode.ASK), approve=approve_all)
    assert outcome.reason == "done" and sorted(sum(asked, [])) == ["t1", "t2"]

    async def refuse(executor, ids):
        return [], list(ids)

    planner = ScriptedPlanner({"goal": "g", "tasks": [write("value.txt", "1\n")]},
                              {"goal": "g", "tasks": [write("value.txt", "2\n")]})
    outcome, _, _ = run_session(git_repo, planner, policy=Policy(ApprovalMode.ASK), approve=refuse)
    assert outcome.reason == "stopped" and len(planner.requests) == 1


def test_the_projects_tests_are_run_after_a_round_that_changed_code(git_repo):
    planner = ScriptedPlanner({"goal": "g", "tasks": [write("value.txt", "1\n")]},
                              {"goal": "g", "tasks": [write("value.txt", "2\n")]})
    outcome, events, _ = run_session(git_repo, planner, f"execution.test_command={CHECK}")
    observed = [e for e in events if isinstance(e, RoundObserved)]
    assert observed[0].tests["by"] == "r1-tests" and observed[0].tests["ok"] is False
    assert "value is wrong: 1" in planner.requests[1]
    assert outcome.reason == "done" and outcome.rounds == 2


def test_follow_up_task_ids_and_placeholders_get_the_round_prefix():
    plan = Plan.model_validate({"goal": "g", "tasks": [
        {"id": "t1", "title": "a", "tool": "read_files", "args": {"paths": ["x"]}, "deps": []},
        {"id": "t2", "title": "b", "tool": "ask_model", "args": {"prompt": "see ${t1}"}, "deps": ["t1"]}]})
    p = prefix_plan(plan, "r2-")
    assert [t.id for t in p.tasks] == ["r2-t1", "r2-t2"] and p.tasks[1].deps == ["r2-t1"]
    assert p.tasks[1].args == {"prompt": "see ${r2-t1}"}


def test_echos_report_is_asked_from_the_record_only(git_repo):
    import json

    from agx.agent.report import report_request

    planner = ScriptedPlanner({"goal": "g", "tasks": [write("value.txt", "2\n"), check_task()]})
    outcome, _, _ = run_session(git_repo, planner)
    req = report_request(outcome.summary)
    facts = json.loads(req.messages[-1]["content"])
    assert facts == {k: v for k, v in outcome.summary.items() if k != "base_commit"}
    assert facts["apply"] == f"agx apply {outcome.plan_id}" and "only the facts" in req.messages[0]["content"]


def test_a_follow_up_rounds_planned_event_carries_the_prefixed_plan(git_repo):
    from agx.events import Planned

    class StreamingPlanner(ScriptedPlanner):
        def plan(self, request, on_event=None, cancel=None, plan_id=None):
            result = super().plan(request, on_event, cancel, plan_id)
            if result.plan is not None:
                on_event(Planned(plan_id, plan=result.plan.model_dump()))
            return result

    planner = StreamingPlanner({"goal": "g", "tasks": [write("value.txt", "1\n"), check_task()]},
                               {"goal": "g", "tasks": [write("value.txt", "2\n"), check_task()]})
    outcome, events, _ = run_session(git_repo, planner)
    planned = [e for e in events if isinstance(e, Planned)]
    assert [[t["id"] for t in p.plan["tasks"]] for p in planned] == [["t1", "t2"], ["r2-t1", "r2-t2"]]
    assert planned[1].plan["tasks"][1]["deps"] == ["r2-t1"]


def test_tests_before_and_after_are_both_in_the_summary(git_repo):
    """agent.tests_before = "auto" with --yes: the project's tests run in the fresh worktree while
    Delta plans, and round 1's writes wait for that run (it sees the code as it was)."""
    planner = ScriptedPlanner({"goal": "g", "tasks": [write("value.txt", "2\n")]})
    outcome, events, _ = run_session(git_repo, planner, f"execution.test_command={CHECK}")
    s = outcome.summary
    assert s["tests_before"] == {"command": CHECK, "ok": False, "by": "r0-tests"}
    assert s["tests"] == [{"round": 1, "command": CHECK, "ok": True, "by": "r1-tests"}]
    assert outcome.reason == "done"
    text = summary_text(s)
    assert "Tests before: FAIL" in text and "Tests after round 1: pass" in text
    started = [e.task_id for e in events if isinstance(e, TaskStarted)]
    assert started.index("r0-tests") < started.index("t1"), started


def test_tests_before_is_not_run_when_it_would_need_a_question_or_is_off(git_repo):
    planner = ScriptedPlanner({"goal": "g", "tasks": [write("value.txt", "2\n")]})
    asked = []

    async def approve(executor, ids):
        asked.append(list(ids))
        return list(ids), []

    outcome, _, _ = run_session(git_repo, planner, f"execution.test_command={CHECK}", policy=Policy(ApprovalMode.ASK),
                                approve=approve)
    assert outcome.summary["tests_before"] is None and ["r0-tests"] not in asked
    planner = ScriptedPlanner({"goal": "g", "tasks": [write("value.txt", "2\n")]})
    outcome, _, _ = run_session(git_repo, planner, f"execution.test_command={CHECK}", "agent.tests_before=off")
    assert outcome.summary["tests_before"] is None and outcome.summary["tests"][0]["ok"] is True


def test_a_plans_own_test_command_does_not_stand_in_for_the_projects_tests(git_repo):
    """Seen in bench_agent: the 135M model planned run_tests with a command of its own that passed
    while the project's check failed; the round must not count as the goal met."""
    planner = ScriptedPlanner({"goal": "g", "tasks": [
        {"id": "t1", "title": "tests", "tool": "run_tests", "args": {"command": "true"}, "deps": []}]})
    outcome, _, _ = run_session(git_repo, planner, f"execution.test_command={CHECK}", "agent.max_rounds=1")
    assert outcome.reason == "round_limit"
    assert outcome.summary["tests"] == [{"round": 1, "command": CHECK, "ok": False, "by": "r1-tests"}]
