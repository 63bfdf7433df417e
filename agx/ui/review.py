"""Approving what runs: the agent session's questions (round 1 answered by the review keys in the plan
pane, later ones in a dialog), and the keys that approve, skip, edit, delete, replan or reject."""

from __future__ import annotations

from textual.css.query import NoMatches
from textual.widgets import Input

from agx.ui import plan_view as pv
from agx.ui.screens import ConfirmScreen, EditArgsScreen, PromptScreen
from agx.ui.widgets import PlanPane


class ReviewMixin:
    """Part of AgxApp (agx/ui/app.py): methods only; state lives on the app."""

    # -- selection --------------------------------------------------------------------------
    def on_plan_pane_task_selected(self, _: PlanPane.TaskSelected) -> None:
        try:
            self._show_selected_task()
        except NoMatches:  # a selection message that arrives while the app is shutting down
            return
        if self._diff_mode == "task":
            self.refresh_git()

    def _show_selected_task(self) -> None:
        tid = self.plan_pane.selected_task_id()
        tv = self.plan.tasks.get(tid) if (self.plan is not None and tid) else None
        self.task_pane.show_task(tv)

    def _selected(self) -> pv.TaskView | None:
        tid = self.plan_pane.selected_task_id()
        if self.plan is None or tid is None:
            return None
        return self.plan.tasks.get(tid)

    # -- the session's approval questions ------------------------------------------------
    def _round_approver(self, decided: tuple[list[str], list[str]] | None = None):
        """Round 1: the decisions of a review made before the session (`decided`), or the review
        keys now (Delta's plan, in the plan pane). Later questions: a dialog listing the tasks."""
        first = {"pending": True}

        async def approve(executor, ids: list[str]) -> tuple[list[str], list[str]]:
            if first["pending"] and not all(pv.is_session_task(i) for i in ids):  # not the tests-before run
                first["pending"] = False
                if decided is not None:
                    no = [i for i in ids if i in decided[1]]
                    return [i for i in ids if i not in no], no
                return await self._review_in_session(executor, ids)
            return await self._confirm_round(executor, ids)

        return approve

    async def _review_in_session(self, executor, ids: list[str]) -> tuple[list[str], list[str]]:
        """Wait for the review keys (a, space, e, d, r, x: agx/ui/review.py) on round 1's plan."""
        import asyncio

        view = self.plans.get(executor.plan_id)
        if view is None:
            return [], list(ids)
        answer = asyncio.get_running_loop().create_future()
        self._review["answer"] = answer
        view.phase = pv.REVIEW
        self._plan_ready(view, None)
        try:
            return await answer
        finally:
            self._review["answer"] = None

    def answer_review(self, approved: list[str], denied: list[str], then: str | None = None) -> bool:
        """The review's decision for the session waiting on it (False when none is waiting).
        `then`: "reject", or the request to plan next (replan with feedback)."""
        review = getattr(self, "_review", None) or {}
        answer = review.get("answer")
        if self._session is None or answer is None or answer.done():
            return False
        review["then"] = then
        answer.set_result((approved, denied))
        if then is not None:
            self._session.stop()
        return True

    async def _confirm_round(self, executor, ids: list[str]) -> tuple[list[str], list[str]]:
        import asyncio

        from rich.text import Text

        from agx.execution.printer import approval_details, visible
        from agx.planning.tools import Risk

        fut = asyncio.get_running_loop().create_future()
        lines = []
        for i in ids:
            node = executor.nodes[i]
            lines.append(f"  {i} [{node.risk.value}] {node.task.tool}: {visible(node.task.title)}")
            if node.risk is not Risk.READ:  # writes and commands in full: what "y" runs is on screen
                lines.extend("      " + line for line in approval_details(node.task.args, 58))  # the box is 66 wide
        tests_only = all(executor.nodes[i].task.tool == "run_tests" for i in ids)
        heading = ("agx would run the project's tests to see whether the round reached the goal:" if tests_only
                   else "Delta's follow-up plan (the last round missed the goal):")
        # Text, not markup: a command's own [brackets] must show as typed.
        self.push_screen(ConfirmScreen(Text(heading + "\n" + "\n".join(lines) + "\nRun these tasks?"),
                                       yes="Run them", no="Stop here"),
                         lambda yes: fut.done() or fut.set_result(bool(yes)))
        yes = await fut
        return (list(ids), []) if yes else ([], list(ids))

    # -- actions: availability --------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        phase = self.plan.phase if self.plan is not None else None
        review = {"approve_all", "toggle_task", "edit_task", "delete_task", "replan", "reject"}
        running = {"cancel_task", "cancel_all", "pause"}
        after = {"apply", "discard", "undo", "show_diff"}
        if action in review:
            return phase == pv.REVIEW
        if action in running:  # cancel_all also stops Delta while it plans
            return phase == pv.RUNNING_PHASE or (action == "cancel_all" and phase == pv.PLANNING)
        if action in after:
            if phase not in (pv.FINISHED, pv.APPLIED, pv.UNDONE):
                return False
            if action == "apply":
                return phase in (pv.FINISHED, pv.UNDONE)
            if action == "undo":
                return phase == pv.APPLIED
            return True
        return True

    def _plan_action_ok(self, *phases: str) -> bool:
        if self.plan is None or self.plan.phase not in phases:
            self.notify("Not now: that key works on a plan that is " + " or ".join(phases) + ".", severity="warning")
            return False
        return True

    # -- actions: review --------------------------------------------------------------------
    def action_approve_all(self) -> None:
        if not self._plan_action_ok(pv.REVIEW):
            return
        from agx.planning.validate import validate_plan

        view = self.plan
        report = validate_plan(view.plan_dict(), self.catalogue)
        if report.errors:
            view.errors = report.errors
            self.plan_pane.refresh_tasks()
            shown = "\n".join(f"  • {e}" for e in report.errors[:8])
            self.chat.add_notice(f"The plan is not valid yet:\n{shown}", "error")
            return
        approved, denied = view.approved_ids(), view.denied_ids()
        if not approved:
            self.chat.add_notice("Every task is skipped: nothing to run (x rejects the plan).", "error")
            return
        view.errors = []
        if self._session is None:  # reviewed before any session: a file, or Delta's plan fixed by hand
            self.start_run(view, report.plan, approved, denied)
            return
        if not self.answer_review(approved, denied):
            self.notify("Delta is still finishing the plan; approve when it asks.", severity="warning")
            return
        self.mark_approved(view, approved, denied)

    def action_toggle_task(self) -> None:
        if not self._plan_action_ok(pv.REVIEW):
            return
        tv = self._selected()
        if tv is None:
            return
        tv.status = pv.DENIED if tv.status in (pv.AWAITING, pv.APPROVED) else pv.APPROVED
        self.plan_pane.refresh_tasks({tv.id})
        self._show_selected_task()

    def action_edit_task(self) -> None:
        if not self._plan_action_ok(pv.REVIEW):
            return
        tv = self._selected()
        if tv is None:
            self.notify("Select a task first (arrow keys in the plan pane).", severity="warning")
            return
        view = self.plan
        tid = tv.id

        def validate(args: dict) -> list[str]:
            from agx.planning.validate import validate_plan

            plan = view.plan_dict()
            for t in plan["tasks"]:
                if t.get("id") == tid:
                    t["args"] = args
            report = validate_plan(plan, self.catalogue)
            return [e for e in report.errors if e.startswith(f"task {tid!r}")]

        def done(args: dict | None) -> None:
            if args is None:
                return
            tv.task = {**tv.task, "args": args}
            self._replan_structure(view)
            self.chat.add_notice(f"Edited the arguments of {tid}.", "plan")
            if self.session_log is not None:
                self.session_log.append("plan_edit", plan_id=view.plan_id, task_id=tid, args=args)

        self.push_screen(EditArgsScreen(tid, str(tv.task.get("tool", "?")), dict(tv.task.get("args") or {}),
                                        validate), done)

    def _replan_structure(self, view: pv.PlanView) -> None:
        """After an edit or delete: re-validate and redraw (levels from validate.py)."""
        from agx.planning.validate import validate_plan

        report = validate_plan(view.plan_dict(), self.catalogue)
        statuses = {tid: tv.status for tid, tv in view.tasks.items()}
        view.set_plan(view.plan_dict(), report.errors, report.levels or None)
        for tid, st in statuses.items():
            if tid in view.tasks:
                view.tasks[tid].status = st
        self.plan_pane.show(view)
        self._show_selected_task()
        if self._session is not None:  # the running session's executor and record take the edit
            if not report.errors:
                problems = self._session.revise_plan(view.plan_dict())
                if problems:
                    self.chat.add_notice("The run did not take the edit: " + "; ".join(problems[:3]), "error")
        elif self.repo is not None:
            from agx.execution import plan_run

            plan_run.save_planned(self.repo, view.plan_id, view.request, view.plan_dict(), view.errors)

    def action_delete_task(self) -> None:
        if not self._plan_action_ok(pv.REVIEW):
            return
        tv = self._selected()
        if tv is None:
            return
        view = self.plan
        dependents = view.dependents_of(tv.id)
        if dependents:
            self.chat.add_notice(f"{', '.join(dependents)} depend(s) on {tv.id}: delete or edit those first.", "error")
            return
        del view.tasks[tv.id]
        self._replan_structure(view)
        self.chat.add_notice(f"Deleted task {tv.id}.", "plan")
        if self.session_log is not None:
            self.session_log.append("plan_edit", plan_id=view.plan_id, task_id=tv.id, deleted=True)

    def action_replan(self) -> None:
        if not self._plan_action_ok(pv.REVIEW):
            return
        view = self.plan

        def done(feedback: str | None) -> None:
            if not feedback:
                return
            request = f"{view.request}\n\nFeedback on the previous plan: {feedback}"
            self.chat.add_notice(f"Replanning with your feedback: {feedback}", "plan")
            if self.answer_review([], list(view.tasks), then=request):
                return  # the session ends, then Delta plans again (ui/plan_flow.py _session_finished)
            self._close_plan(view, pv.REJECTED, "discarded")
            self.start_planning(request)

        self.push_screen(PromptScreen("What should Delta change in this plan?", "e.g. also add a test"), done)

    def action_reject(self) -> None:
        if not self._plan_action_ok(pv.REVIEW):
            return
        self.chat.add_notice(f"Rejected plan {self.plan.plan_id}.", "plan")
        if not self.answer_review([], list(self.plan.tasks), then="reject"):
            self._close_plan(self.plan, pv.REJECTED, "discarded")
        self.query_one("#input", Input).focus()

    def _close_plan(self, view: pv.PlanView, phase: str, state: str) -> None:
        from agx.execution import plan_run

        view.phase = phase
        if self.repo is not None:
            plan_run.set_state(self.repo, view.plan_id, state)
        if self.session_log is not None:
            self.session_log.append("plan_decision", plan_id=view.plan_id, decision=phase)
        self.plan_pane.refresh_tasks()
        self.refresh_bindings()

