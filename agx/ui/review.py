"""Reviewing a plan before it runs: selection, and the keys that approve, skip, edit, delete, replan or reject."""

from __future__ import annotations

from textual.css.query import NoMatches
from textual.widgets import Input

from agx.ui import plan_view as pv
from agx.ui.screens import EditArgsScreen, PromptScreen
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

