"""The shell reviews round 1 *inside* the agent session (agx/agent/session.py): the session has
made its worktree and record and waits on the approval callback while the plan pane takes the
review keys. A plan handed to the session with no prior decision goes through exactly that path
(Delta's plans do too, after planning), so these tests need no model: real git, real executor."""

from __future__ import annotations

from agx.config import load_config
from agx.planning.plan import Plan
from agx.ui import plan_view as pv
from agx.ui.app import AgxApp
from agx.workspace.plan_store import PlanStore, new_plan_id
from agx.workspace.sessionlog import latest_session, read_records
from ui_helpers import DEMO_PLAN, wait_for

SIZE = (160, 45)


def _app(repo) -> AgxApp:
    config = load_config(repo, overrides=["agent.max_rounds=1", "agent.echo_report=false"], use_user_file=False).config
    return AgxApp(config, None, repo, load_models=False, watch_files=False)


async def _start_in_session(app, pilot, request: str) -> pv.PlanView:
    await wait_for(pilot, lambda: app.session_log is not None, timeout=30, what="the session log")
    view = pv.PlanView(new_plan_id(), request=request)
    app.plans[view.plan_id] = view
    app._show_plan(view)
    app._run_worker = app._run_session(view, Plan.model_validate(DEMO_PLAN))
    await wait_for(pilot, lambda: app._review["answer"] is not None, timeout=60, what="the session's approval question")
    assert app._session is not None and app.plan is view and view.phase == pv.REVIEW
    return view


async def test_review_inside_the_session_edits_reach_the_executor_and_record(git_repo):
    app = _app(git_repo)
    async with app.run_test(size=SIZE) as pilot:
        view = await _start_in_session(app, pilot, "write hello and list it")
        plan_id = view.plan_id
        # The session's record exists (state running) before anything was approved.
        assert PlanStore(git_repo).load(plan_id).state == "running"
        app.plan_pane.select_task("t3")
        await pilot.pause(0.1)
        await pilot.press("d")  # delete the last task while the session waits
        await pilot.pause(0.2)
        assert list(view.tasks) == ["t1", "t2"]
        assert set(app._session.round_executor.nodes) == {"t1", "t2"}, "the executor did not take the edit"
        assert [t["id"] for t in PlanStore(git_repo).load(plan_id).plan["tasks"]] == ["t1", "t2"]
        await pilot.press("a")
        await wait_for(pilot, lambda: app._session is None and view.phase == pv.FINISHED, timeout=60, what="the run")
        assert {t: tv.status for t, tv in view.tasks.items()} == {"t1": "done", "t2": "done"}
    rec = PlanStore(git_repo).load(plan_id)
    assert rec.state == "done" and set(rec.tasks) == {"t1", "t2"} and rec.tasks["t2"]["commit"]
    kinds = [r["type"] for r in read_records(latest_session(git_repo)) if r.get("plan_id") == plan_id]
    # The session logs the plan and its outcome; the shell logs what the user decided.
    assert kinds.count("plan") == 1 and kinds.count("plan_outcome") == 1 and "plan_decision" in kinds


async def test_reject_inside_the_session_stops_it_and_removes_the_worktree(git_repo):
    app = _app(git_repo)
    async with app.run_test(size=SIZE) as pilot:
        view = await _start_in_session(app, pilot, "write hello and list it")
        worktree = git_repo / ".agx" / "worktrees" / view.plan_id
        assert worktree.exists()
        await pilot.press("x")
        await wait_for(pilot, lambda: app._session is None and view.phase == pv.REJECTED, timeout=60,
                       what="the session to end")
        await wait_for(pilot, lambda: not worktree.exists(), timeout=30, what="the worktree to go")
    rec = PlanStore(git_repo).load(view.plan_id)
    assert rec.state == "discarded" and not any(t.get("started") for t in rec.tasks.values())
    assert not (git_repo / "hello.txt").exists()
