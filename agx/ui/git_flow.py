"""After a run: apply / undo / discard, and the git pane (diffs, file watching)."""

from __future__ import annotations

from textual import work
from textual.css.query import NoMatches

from agx.ui import plan_view as pv
from agx.ui.gitview import GitSnapshot, snapshot
from agx.ui.messages import (GitChanged, PlanApplied, PlanDiscarded, PlanOpDone, PlanOpFailed,
                             PlanUndone)
from agx.ui.screens import ConfirmScreen


class GitMixin:
    """Part of AgxApp (agx/ui/app.py): methods only; state lives on the app."""

    # -- after a run ------------------------------------------------------------------------
    def action_apply(self) -> None:
        if self.plan is None or self.plan.phase not in (pv.FINISHED, pv.UNDONE):
            self.notify("Nothing to apply: run a plan first.", severity="warning")
            return
        self._git_op("apply", self.plan.plan_id)

    def action_undo(self) -> None:
        if not self._plan_action_ok(pv.APPLIED):
            return
        self._git_op("undo", self.plan.plan_id)

    def action_discard(self) -> None:
        if not self._plan_action_ok(pv.FINISHED, pv.APPLIED, pv.UNDONE):
            return
        plan_id = self.plan.plan_id

        def done(yes: bool | None) -> None:
            if yes:
                self._git_op("discard", plan_id)

        self.push_screen(ConfirmScreen(f"Discard plan {plan_id}? Its worktree and ref refs/agx/{plan_id} are deleted."),
                         done)

    @work(thread=True, group="git-op")
    def _git_op(self, what: str, plan_id: str) -> None:
        from agx.execution import plan_run
        from agx.workspace.plan_store import PlanStore

        try:
            store = PlanStore(self.repo)
            rec = store.load(plan_id)
            if what == "apply":
                plan_run.apply_plan(store, rec)
                mode = rec.applied.get("mode") if rec.applied else "?"
                n = len(rec.applied.get("files", [])) if rec.applied else 0
                detail = (f"Applied plan {plan_id}: {n} file(s), "
                          + ("one commit on your branch." if mode == "commit" else "left uncommitted (you had local changes).")
                          + " u undoes it.")
            elif what == "undo":
                plan_run.undo_plan(store, rec)
                detail = f"Undid plan {plan_id}'s apply."
            else:
                removed = plan_run.discard_plan(store, rec)
                detail = f"Discarded plan {plan_id} ({', '.join(removed) or 'nothing left'})."
            done = {"apply": PlanApplied, "undo": PlanUndone}.get(what, PlanDiscarded)
            self.post_message(done(plan_id, detail))
        except Exception as exc:  # PlanRunError, PlanStoreError: one line for the user
            self.post_message(PlanOpFailed(plan_id, f"{what} failed: {exc}"))

    # Textual dispatches by the message's own class: one handler per outcome type.
    def on_plan_applied(self, msg: PlanApplied) -> None:
        self._plan_op_done(msg)

    def on_plan_undone(self, msg: PlanUndone) -> None:
        self._plan_op_done(msg)

    def on_plan_discarded(self, msg: PlanDiscarded) -> None:
        self._plan_op_done(msg)

    def on_plan_op_failed(self, msg: PlanOpFailed) -> None:
        self._plan_op_done(msg)

    def _plan_op_done(self, msg: PlanOpDone) -> None:
        ok = not isinstance(msg, PlanOpFailed)
        self.chat.add_notice(msg.detail, "plan" if ok else "error")
        view = self.plans.get(msg.plan_id)
        if ok and view is not None:
            view.phase = {PlanApplied: pv.APPLIED, PlanUndone: pv.UNDONE, PlanDiscarded: pv.DISCARDED}[type(msg)]
            if self.session_log is not None:
                self.session_log.append("plan_decision", plan_id=view.plan_id, decision=view.phase)
            if view is self.plan:
                self.plan_pane.refresh_tasks()
        self.refresh_bindings()
        self.refresh_git()

    def action_show_diff(self) -> None:
        order = ["plan", "task", "worktree"]
        self._diff_mode = order[(order.index(self._diff_mode) + 1) % 3] if self._diff_mode in order else "task"
        self.refresh_git()

    # -- git pane ---------------------------------------------------------------------------
    def refresh_git(self) -> None:
        self._git_refresh_worker(*self._diff_target())

    def _diff_target(self) -> tuple[tuple[str, ...] | None, str]:
        view = self.plan
        rec = self._run.record if (self._run is not None and view is not None
                                   and self._run.record.plan_id == view.plan_id) else None
        if rec is None and view is not None:
            rec = getattr(self, "_restored_runs", {}).get(view.plan_id)
        mode = self._diff_mode
        if rec is not None and mode in ("auto", "plan", "task"):
            tv = self._selected()
            if mode == "task" and tv is not None and tv.commit:
                return ("show", "--format=commit %H%n%s%n", tv.commit), f"task {tv.id}'s commit {tv.commit[:10]}"
            if rec.base_commit and rec.branch and view.phase != pv.DISCARDED:
                return ("diff", rec.base_commit, rec.branch), f"plan {rec.plan_id}: whole diff ({rec.branch})"
        return None, "working tree vs HEAD"

    @work(thread=True, group="git", exclusive=True)
    def _git_refresh_worker(self, diff_args: tuple[str, ...] | None, title: str) -> None:
        snap = snapshot(self.repo, diff_args, title)
        self.call_from_thread(self._show_git, snap)

    def _show_git(self, snap: GitSnapshot) -> None:
        try:
            self.git_pane.show(snap)
        except NoMatches:  # the app is exiting and its screen is gone; the snapshot has no reader
            pass

    @work(group="watch", exclusive=True, exit_on_error=False)
    async def _watch_repo(self) -> None:
        """Refresh the git pane when files change (watchfiles; bursts collapse)."""
        from watchfiles import awatch

        repo = str(self.repo)

        def interesting(_change, path: str) -> bool:
            rel = path[len(repo):]
            return "/.git/objects/" not in rel and "/.agx/" not in rel and not rel.endswith(".lock")

        try:
            async for _ in awatch(repo, watch_filter=interesting, debounce=300, step=100,
                                  stop_event=self._watch_stop()):
                self.post_message(GitChanged())
        except Exception as exc:  # e.g. inotify limits: the pane still refreshes after each task
            self.log.warning(f"file watching stopped: {exc}")

    def _watch_stop(self):
        import asyncio

        self._watch_event = asyncio.Event()
        return self._watch_event

    def on_git_changed(self, _: GitChanged) -> None:
        # The watcher is a separate task: a change can arrive while the app exits and its
        # panes are already removed (seen in CI); then there is nothing left to refresh.
        try:
            self.refresh_git()
        except NoMatches:
            pass

