"""A request's life in the shell, shown: planning, the run's events, the end of a run.

The lifecycle itself is agx/agent/session.py; this mixin starts it, answers its approval
callbacks and turns its events into typed messages for the panes."""

from __future__ import annotations

from pathlib import Path

from textual import work

from agx import events as ev
from agx.runtime.engine import EngineError
from agx.ui import plan_view as pv
from agx.ui.messages import PlanEventArrived, TextPending


class PlanFlowMixin:
    """Part of AgxApp (agx/ui/app.py): methods only; state lives on the app."""

    # -- starting a request -----------------------------------------------------------------
    def _busy_with_plan(self) -> bool:
        return self._session is not None or (self.plan is not None and self.plan.phase in (pv.PLANNING, pv.RUNNING_PHASE))

    def start_planning(self, request: str) -> None:
        """A change request: the agent session (agx/agent/session.py) plans it with Delta, tasks
        streaming into its executor; the plan is reviewed here when the session asks for approval."""
        from agx.workspace.plan_store import new_plan_id

        if self.repo is None:
            self.chat.add_notice("Plans need a git repository (restart agx in one, or choose git init).", "error")
            return
        if self._busy_with_plan():
            self.chat.add_notice(f"Plan {self.plan.plan_id} is still {self.plan.phase}; wait, or cancel it first.",
                                 "error")
            return
        view = pv.PlanView(new_plan_id(), request=request)
        self.plans[view.plan_id] = view
        self._show_plan(view)
        self.refresh_bindings()
        self._run_worker = self._run_session(view)

    def _planning_catalogue(self, request: str):
        """Built-in tools plus MCP servers' tools (waiting for servers still starting), narrowed to
        the ones relevant to `request` when there are many (agx/planning/retrieval.py)."""
        from agx.execution.builtin_tools import builtin_catalogue
        from agx.ui import mcp_tools

        builtin = builtin_catalogue(code=self.config.agent.code_tool)
        if self.mcp is None:
            return builtin
        catalogue = mcp_tools.planning_catalogue(builtin, self.mcp, request, self.config.mcp.max_tools)
        self._catalogue = mcp_tools.catalogue_now(builtin_catalogue(), self.mcp)
        return catalogue

    def on_plan_event_arrived(self, msg: PlanEventArrived) -> None:
        event = msg.event
        if isinstance(event, ev.PlanningStarted) and event.plan_id not in self.plans:
            self.plans[event.plan_id] = pv.PlanView(event.plan_id, request=event.request)
        view = self.plans.get(event.plan_id)
        if view is None:
            return
        changed = view.apply(event)
        if self.session_log is not None and not isinstance(event, ev.TaskOutput):
            self.session_log.append("plan_event", **event.to_record())
        if view is self.plan:
            if changed is None:
                self.plan_pane.show(view)
            else:
                self.plan_pane.refresh_tasks(changed)
            self._show_selected_task()
            self.refresh_bindings()
        if isinstance(event, (ev.TaskFinished, ev.RunFinished)):
            self.refresh_git()

    def _plan_ready(self, view: pv.PlanView, record: dict | None) -> None:
        """A plan is ready for review: show it, focus it. `record`: a plan reviewed before any
        session runs it (a file, or Delta's plan that never validated) is logged and stored
        here; the agent session records the plans it makes itself."""
        from agx.execution import plan_run

        if record is not None and self.session_log is not None:
            self.session_log.append("plan", **record)
        if record is not None and self.repo is not None:
            plan_run.save_planned(self.repo, view.plan_id, view.request, view.plan_dict(), view.errors)
        self.plan = view
        self._show_plan(view)
        n = len(view.tasks)
        if view.errors:
            shown = "\n".join(f"  • {e}" for e in view.errors[:8])
            self.chat.add_notice(f"Plan {view.plan_id} has problems Delta could not repair:\n{shown}\n"
                                 "Edit (e) or delete (d) tasks, replan with feedback (r), or reject (x).", "error")
        else:
            self.chat.add_notice(
                f"Plan {view.plan_id}: {n} task(s), critical path {len(view.critical)}. "
                "a approves all · space skips a task · e edits · d deletes · r replans · x rejects.", "plan")
        self.plan_pane.focus()
        self.refresh_bindings()

    def load_plan_file(self, path_text: str, plan_id: str | None = None) -> None:
        """`/run-plan FILE`: a hand-written plan (the planner's JSON shape) goes to review as if
        Delta had planned it — validated the same way."""
        from agx.planning.plan_file import PlanFileError, read_plan_json
        from agx.planning.validate import validate_plan
        from agx.workspace.plan_store import new_plan_id

        if self.repo is None:
            self.chat.add_notice("Plans need a git repository.", "error")
            return
        if not path_text:
            self.chat.add_notice("usage: /run-plan FILE (JSON: {\"goal\": ..., \"tasks\": [...]})", "error")
            return
        if self._busy_with_plan():
            self.chat.add_notice(f"Plan {self.plan.plan_id} is still {self.plan.phase}.", "error")
            return
        path = Path(path_text).expanduser()
        if not path.is_absolute():
            path = self.cwd / path
        try:
            data = read_plan_json(path)  # the same reader as `agx run --plan`
        except PlanFileError as exc:
            self.chat.add_notice(str(exc), "error")
            return
        report = validate_plan(data, self.catalogue)
        pid = plan_id or new_plan_id()
        view = pv.PlanView(pid, request=f"/run-plan {path_text}")
        view.set_plan(report.plan.model_dump() if report.plan is not None else (data if isinstance(data, dict) else {}),
                      report.errors, report.levels or None)
        view.phase = pv.REVIEW
        self.plans[pid] = view
        self._plan_ready(view, {"plan_id": pid, "request": view.request, "plan": view.plan_dict(),
                                "errors": view.errors, "source": str(path)})

    def _show_plan(self, view: pv.PlanView) -> None:
        self.plan = view
        self.plan_pane.show(view)
        self._show_selected_task()
        self.refresh_git()

    # -- running ----------------------------------------------------------------------------
    def start_run(self, view: pv.PlanView, plan, approved: list[str], denied: list[str]) -> None:
        """Run a plan reviewed before any session (a file, or one fixed by hand) as round 1."""
        self.mark_approved(view, approved, denied)
        self._run_worker = self._run_session(view, plan, (approved, denied))

    def mark_approved(self, view: pv.PlanView, approved: list[str], denied: list[str]) -> None:
        """The review said yes: the view runs, the decision is logged and said."""
        view.phase = pv.RUNNING_PHASE
        for tid in approved:
            view.tasks[tid].status = pv.PENDING
        self.plan_pane.refresh_tasks()
        self.refresh_bindings()
        if self.session_log is not None:
            self.session_log.append("plan_decision", plan_id=view.plan_id, decision="approved",
                                    approved=approved, denied=denied)
        self.chat.add_notice(f"Running plan {view.plan_id} in worktree .agx/worktrees/{view.plan_id}, ref refs/agx/{view.plan_id} "
                             f"({len(approved)} approved, {len(denied)} skipped).", "plan")

    @work(group="executor", exit_on_error=False)
    async def _run_session(self, view: pv.PlanView, plan=None, decided=None) -> None:
        """One request's life (agx/agent/session.py, as `agx run`): Delta plans (or `plan` runs),
        the review keys answer round 1's approval, follow-up rounds are confirmed in a dialog."""
        import asyncio

        from agx.agent.session import AgentSession
        from agx.execution.policy import ApprovalMode, Policy
        from agx.execution.sandbox import unavailable_notice

        from_file = view.request.startswith("/run-plan")
        rounds = 1 if from_file else self.config.agent.max_rounds
        self._review = {"answer": None, "then": None}  # the in-session review's future and what follows it
        catalogue = self.catalogue if plan is not None else await asyncio.to_thread(self._planning_catalogue, view.request)
        # ask_model tasks talk to Echo; planning, `code` tasks and follow-up rounds need Delta.
        echo = await asyncio.to_thread(self._engine_or_none, "echo")
        delta = None
        if plan is None or rounds > 1 or any(t.tool == "code" for t in plan.tasks):
            try:
                delta = await asyncio.to_thread(self._engine, "delta")
            except EngineError as exc:
                if plan is None:
                    self.chat.add_notice(f"Delta could not plan: {exc}", "error")
                    view.phase = pv.REJECTED
                    self.plan_pane.show(view)
                    self.refresh_bindings()
                    return
        sandbox_note = await asyncio.to_thread(unavailable_notice, self.config.execution.sandbox)
        if sandbox_note and not getattr(self, "_sandbox_noted", False):  # said once per session
            self._sandbox_noted = True
            self.chat.add_notice(f"Sandbox: {sandbox_note}", "error")
        session = AgentSession(self.repo, self.config, catalogue=catalogue, policy=Policy(ApprovalMode.ASK),
                               delta=delta, echo=echo, approve=self._round_approver(decided),
                               on_event=self._on_session_event, max_rounds=rounds, keep_empty=True,
                               log=self.session_log, observe_tests=not from_file)
        self._session = session
        self._diff_mode = "auto"
        try:
            outcome = await session.run(view.request, plan, plan_id=view.plan_id)
        except Exception as exc:  # PlanRunError, EngineError: the user's to see, not a crash
            view.phase = pv.REVIEW if plan is not None else pv.REJECTED
            self.chat.add_notice(f"Could not start the plan: {exc}", "error")
            self.refresh_bindings()
            return
        finally:
            self._session = None
        self._session_finished(view, outcome, from_file)

    def _session_finished(self, view: pv.PlanView, outcome, from_file: bool) -> None:
        from agx.agent.session import summary_text

        then = self._review["then"]
        if then is not None:  # rejected (x) or sent back to Delta (r) in review: nothing ran
            self._discard_quietly(view.plan_id)
            self._close_plan(view, pv.REJECTED, "discarded")
            if then != "reject":
                self.start_planning(then)
            return
        if outcome.reason == "planning_failed":
            self._planning_failed(view, outcome.summary["errors"])
            return
        if outcome.reason == "stopped" and outcome.last_result is None:  # stopped while Delta planned
            view.phase = pv.REJECTED
            self.plan_pane.show(view)
            self.chat.add_notice(f"Stopped plan {view.plan_id} before anything ran (its worktree is removed).", "plan")
            self.refresh_bindings()
            return
        last = outcome.last_result
        view.phase, view.ok, view.wall_s = pv.FINISHED, outcome.ok, (last.wall_s if last else 0.0)
        self._run_finished(view)
        if not from_file:
            self.chat.add_notice(summary_text(outcome.summary), "plan" if outcome.ok else "error")
            if self.config.agent.echo_report and outcome.reason != "stopped":
                self.send_report(outcome.summary)  # Echo's prose, from the same record

    def _planning_failed(self, view: pv.PlanView, errors: list[str]) -> None:
        """Delta's plan never validated: it stays on screen to fix by hand (e, d), send back (r)
        or reject (x); approving it starts a new session with the fixed plan (a new plan id)."""
        from agx.workspace.plan_store import new_plan_id

        if not view.tasks:
            view.phase = pv.REJECTED
            self.plan_pane.show(view)
            shown = "\n".join(f"  • {e}" for e in errors[:8])
            self.chat.add_notice(f"Delta could not plan:\n{shown}", "error")
            self.refresh_bindings()
            return
        self.plans.pop(view.plan_id, None)
        view.plan_id = new_plan_id()  # the failed one's record and worktree are gone
        self.plans[view.plan_id] = view
        view.errors = list(errors) or view.errors or ["no valid plan"]
        view.phase = pv.REVIEW
        self._plan_ready(view, {"plan_id": view.plan_id, "request": view.request, "plan": view.plan_dict(),
                                "errors": view.errors, "source": "delta (not valid)"})

    @work(thread=True, group="git-op")
    def _discard_quietly(self, plan_id: str) -> None:
        from agx.execution import plan_run
        from agx.workspace.plan_store import PlanStore

        try:
            store = PlanStore(self.repo)
            plan_run.discard_plan(store, store.load(plan_id))
        except Exception:  # nothing was there to remove
            pass

    def _on_session_event(self, event: ev.PlanEvent) -> None:
        """The agent session's stream: its own round events as notices, the rest to the panes."""
        from agx.agent.events import RoundObserved, RoundStarted, SessionFinished

        session = self._session
        if session is not None and session.run_handle is not None and self._run is not session.run_handle:
            self._run = session.run_handle  # the worktree now exists: diffs, cancel, quit use it
            if self._run.record.excluded:
                from agx.workspace.git_isolation import display

                self.chat.add_notice("Kept out of the plan (untracked files that look like secrets; its tasks do not "
                                     f"see them and no commit will hold them): "
                                     f"{', '.join(map(display, self._run.record.excluded))}")
        if isinstance(event, RoundStarted):
            self._round = event.round
            if event.round > 1:
                self.chat.add_notice(f"Round {event.round}: Delta replans from what happened.", "plan")
            return
        if isinstance(event, RoundObserved):
            if event.tests is not None:
                self.chat.add_notice(f"Tests after round {event.round}: {'pass' if event.tests['ok'] else 'FAIL'}.",
                                     "plan" if event.tests["ok"] else "error")
            return
        if isinstance(event, SessionFinished):
            return
        if isinstance(event, (ev.PlanningStarted, ev.Planned)) and getattr(self, "_round", 1) > 1:
            # A follow-up round's tasks arrive as TaskAdded into the same view; a new view would hide round 1.
            return
        self._on_executor_event(event)

    def _on_executor_event(self, event: ev.PlanEvent) -> None:
        """Executor subscriber (the app's loop thread): output to the coalescer, the rest as
        messages so they are handled in order like the planner's."""
        if isinstance(event, ev.TaskOutput):
            view = self.plans.get(event.plan_id)
            if view is not None and event.task_id in view.tasks:
                view.tasks[event.task_id].output_chars += len(event.text)
            if self.coalescer.push(("task", event.task_id), event.text):
                self.post_message(TextPending())
            return
        self.post_message(PlanEventArrived(event))

    def _run_finished(self, view: pv.PlanView) -> None:
        self.flush_text()
        counts = view.counts()
        summary = ", ".join(f"{n} {pv_word(s)}" for s, n in counts.items())
        verdict = "finished" if view.ok else "finished with problems"
        self.chat.add_notice(
            f"Plan {view.plan_id} {verdict} in {view.wall_s or 0:.1f}s ({summary}). "
            "y applies it to your branch · v shows the diff · n discards it.", "plan" if view.ok else "error")
        if view is self.plan:
            self.plan_pane.refresh_tasks()
        self.refresh_bindings()
        self.refresh_git()

    def action_cancel_task(self) -> None:
        if not self._plan_action_ok(pv.RUNNING_PHASE) or self._run is None:
            return
        tv = self._selected()
        if tv is not None:
            self._run.executor.cancel(tv.id)
            self.chat.add_notice(f"Cancelling {tv.id}…", "plan")

    def action_cancel_all(self) -> None:
        if not self._plan_action_ok(pv.RUNNING_PHASE, pv.PLANNING):
            return
        if self._session is not None:
            self._session.stop()  # planning, running tasks and any follow-up round
        elif self._run is not None:
            self._run.executor.cancel_all()
        self.chat.add_notice("Stopping Delta's planning…" if self.plan.phase == pv.PLANNING
                             else "Cancelling every task…", "plan")

    def action_pause(self) -> None:
        if not self._plan_action_ok(pv.RUNNING_PHASE) or self._run is None:
            return
        ex = self._run.executor
        if self.plan.paused:
            ex.resume()
        else:
            ex.pause()
        self.plan.paused = not self.plan.paused
        self.chat.add_notice("Dispatch paused (running tasks go on)." if self.plan.paused else "Dispatch resumed.",
                             "plan")
        self.plan_pane.refresh_tasks()


def pv_word(status: str) -> str:
    from agx.ui.widgets.plan import STATUS_WORDS

    return STATUS_WORDS.get(status, status)
