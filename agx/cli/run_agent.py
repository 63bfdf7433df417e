"""`agx run "request"` through the agent loop (agx/agent/session.py): this module only asks
(the terminal approval dialogue) and shows (the headless printer, or JSON Lines with --json).

JSON Lines (`agx run --json`): one object per event on stdout, each with "event" (its kind),
"plan_id" and "ts", then the event's fields; the last line is always "SessionFinished" with the
summary. Everything else agx says goes to stderr. The schema is documented in README.md.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time

from agx.cli.context import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, CliContext

JSON_SCHEMA_VERSION = 1


def _json_line(event) -> None:
    record = event.to_record()
    try:
        sys.stdout.write(json.dumps(record, default=list, ensure_ascii=False) + "\n")
        sys.stdout.flush()
    except (BrokenPipeError, ValueError):
        pass


def run_agent(ctx: CliContext, *, request: str, plan, catalogue, policy, interactive: bool, max_parallel: int,
              timeout: float, as_json: bool, engine_or_none) -> int:
    from agx import events as ev
    from agx.agent.events import RoundObserved, RoundStarted, SessionFinished
    from agx.agent.session import AgentSession, summary_text
    from agx.cli.cmd_run import _approval_dialogue, _ask_in_thread, _session_log
    from agx.execution.printer import HeadlessPrinter, format_plan, format_summary

    repo = ctx.repo
    out = sys.stderr if as_json else sys.stdout
    if plan is None:
        ctx.warn_if_tiny("delta")
        delta = ctx.pool.engine("delta")
    else:
        delta = engine_or_none(ctx, "delta", "code tasks will fail" if any(t.tool == "code" for t in plan.tasks)
                               else "not needed to run a plan from a file")
    echo = engine_or_none(ctx, "echo", "ask_model tasks will fail" if plan is None or any(t.tool == "ask_model" for t in plan.tasks)
                          else "not needed by this plan")
    t0 = time.perf_counter()
    printer = HeadlessPrinter(out, show_output=ctx.args.show_output, t0=t0, show_added=plan is None)
    state = {"last_planned": None, "executor_nodes": None}
    holder: dict = {}

    def show(event) -> None:
        if as_json:
            _json_line(event)
            return
        session = holder["session"]
        if isinstance(event, RoundStarted):
            rec = session.run_handle.record
            if event.round == 1:
                print(f"agx: plan {rec.plan_id} runs in {rec.worktree} (ref {rec.branch}); your files stay as they are",
                      file=out, flush=True)
                if rec.excluded:
                    from agx.workspace.git_isolation import display

                    print(f"agx: kept out of the plan (untracked files that look like secrets; its tasks do not see "
                          f"them and no commit will hold them): {', '.join(map(display, rec.excluded))}",
                          file=sys.stderr, flush=True)
            else:
                print(f"\nagx: round {event.round} of at most {session.max_rounds}: Delta replans from what happened",
                      file=out, flush=True)
        elif isinstance(event, ev.PlanningStarted):
            print("agx: Delta is planning", file=out, flush=True)
        elif isinstance(event, ev.Planned):
            state["last_planned"] = event
            if not event.errors:
                from agx.planning.plan import Plan

                print(format_plan(Plan.model_validate(event.plan), catalogue), file=out, flush=True)
        elif isinstance(event, RoundObserved):
            ex = session.round_executor
            nodes = list(ex.nodes.values()) if ex is not None else []
            if nodes:
                print("\n" + format_summary(nodes, time.perf_counter() - t0), file=out, flush=True)
            if event.tests is not None:
                print(f"agx: tests after round {event.round}: {'pass' if event.tests['ok'] else 'FAIL'}", file=out, flush=True)
        elif isinstance(event, SessionFinished):
            s = event.summary
            if s["reason"] == "planning_failed":
                planned = state["last_planned"]
                rounds = planned.repair_rounds if planned is not None else 0
                if planned is not None and planned.plan:
                    from agx.planning.plan import Plan
                    try:
                        print(format_plan(Plan.model_validate(planned.plan), catalogue, planned.errors), flush=True)
                    except Exception:  # an invalid plan may not even have a plan's shape
                        pass
                print(f"agx: no valid plan after {rounds} repair round{'s' if rounds != 1 else ''}:", file=sys.stderr)
                for e in s["errors"]:
                    print(f"  - {e}", file=sys.stderr)
            print("\n" + summary_text(s), file=out, flush=True)
        else:
            printer(event)

    async def approve(executor, ids):
        if not interactive:
            print(f"agx: not approved (no terminal to ask): {', '.join(ids)}", file=sys.stderr)
            return [], list(ids)
        return await _ask_in_thread(_approval_dialogue, executor, catalogue, ids)

    flags = {"signalled": False}
    session = AgentSession(repo, ctx.config, catalogue=catalogue, policy=policy, delta=delta, echo=echo,
                           approve=approve, on_event=show, max_rounds=1 if plan is not None else None,
                           observe_tests=plan is None,
                           max_parallel=max_parallel, task_timeout_s=timeout, log=_session_log(repo))
    holder["session"] = session

    async def main():
        loop = asyncio.get_running_loop()

        def on_signal():
            flags["signalled"] = True
            session.stop()

        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, on_signal)
            except (NotImplementedError, RuntimeError):
                pass
        return await session.run(request, plan)

    outcome = asyncio.run(main())
    if not as_json and plan is None and echo is not None and ctx.config.agent.echo_report \
            and outcome.reason != "planning_failed" \
            and not flags["signalled"]:
        from agx.agent.report import stream_report

        print("\nEcho: ", end="", flush=True)
        try:
            for piece in stream_report(echo, outcome.summary):
                print(piece, end="", flush=True)
        except Exception as exc:  # noqa: BLE001 - the summary above stands; Echo's prose is extra
            print(f"(no report: {exc})", end="")
        print(flush=True)
    if outcome.ok:
        return EXIT_OK
    return EXIT_INTERRUPTED if flags["signalled"] else EXIT_FAILURE
