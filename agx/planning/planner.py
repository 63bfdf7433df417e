"""Delta's planner: request -> validated task DAG, streamed task by task.

    planner = Planner(pool.engine("delta"), builtin_catalogue(), repo_dir=repo)
    result = planner.plan("add a test for greet", on_event=print)

Round 0 generates under a grammar (in-process: `plan_gbnf`; remote: the plan's JSON schema),
so the output always parses unless max_tokens cuts it, and feeds a streaming parser: `TaskAdded` is emitted for each
task as soon as its JSON object closes. If validation fails, Delta gets the exact errors back
for up to `repair_rounds` more generations. Repair rounds do not stream `TaskAdded` (their
tasks replace round 0's); the final `Planned` event is authoritative either way.

`plan()` is synchronous, never raises for a bad plan or an engine failure, and calls
`on_event` on the calling thread.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from agx.events import PlanEvent, Planned, PlanningStarted, TaskAdded
from agx.planning.plan import Plan
from agx.planning.prompt import DEFAULT_PROMPT_STYLE, build_plan_messages, repair_messages, repo_context
from agx.planning.schema_grammar import plan_gbnf, plan_json_schema
from agx.planning.stream_parser import PlanStreamParser, parse_plan_text
from agx.planning.tools import ToolCatalogue
from agx.planning.validate import ValidationReport, validate_plan
from agx.runtime.adapters import adapter_goal_style, adapter_prompt_style
from agx.runtime.engine import CancelToken, ChatRequest, Engine, EngineError, GenerationStats
from agx.workspace.plan_store import new_plan_id  # the one plan id format (planner, runs, the shell)




@dataclass
class PlanningStats:
    generations: list[GenerationStats] = field(default_factory=list)
    first_task_s: float | None = None  # from plan() start to the first streamed task
    total_s: float = 0.0

    @property
    def completion_tokens(self) -> int:
        return sum(g.completion_tokens for g in self.generations)

    def to_dict(self) -> dict[str, Any]:
        return {
            "generations": [asdict(g) for g in self.generations],
            "first_task_s": self.first_task_s,
            "total_s": self.total_s,
            "completion_tokens": self.completion_tokens,
        }


@dataclass
class PlanResult:
    plan_id: str
    request: str
    plan: Plan | None  # best effort: present even when invalid, if it has a plan's shape
    plan_dict: dict[str, Any] | None  # the parsed JSON as generated (None when nothing parsed)
    errors: list[str] = field(default_factory=list)
    rounds: int = 0  # repair rounds used (0 = the first answer was final)
    critical_path: int = 0
    width: int = 0
    levels: list[list[str]] = field(default_factory=list)
    raw_outputs: list[str] = field(default_factory=list)
    stats: PlanningStats = field(default_factory=PlanningStats)
    cancelled: bool = False

    @property
    def ok(self) -> bool:
        return not self.errors and self.plan is not None

    def to_record(self) -> dict[str, Any]:
        """JSON-able summary (for the session log)."""
        return {
            "plan_id": self.plan_id,
            "request": self.request,
            "plan": self.plan.model_dump() if self.plan is not None else self.plan_dict,
            "errors": self.errors,
            "rounds": self.rounds,
            "critical_path": self.critical_path,
            "width": self.width,
            "stats": self.stats.to_dict(),
        }


EventCallback = Callable[[PlanEvent], None]


def _is_in_process(engine: Engine) -> bool:
    try:
        return engine.info().backend == "llama_cpp"
    except Exception:  # an engine that cannot describe itself gets the portable schema
        return False


def counts_steps(engine: Engine) -> bool:
    """Whether plans from `engine` get at least one task per numbered goal step (schema_grammar's
    count_steps): yes when its adapter was trained on goals written as numbered steps."""
    return adapter_goal_style(getattr(engine, "adapter_path", None)) == "steps"


def plan_grammar(
    engine: Engine, catalogue: ToolCatalogue, max_tasks: int = 10, count_steps: bool | None = None,
    typed_links: bool | None = None,
) -> str | None:
    """The in-process grammar Delta plans under on `engine` (None for a remote engine, which
    gets the plan's JSON schema). The planner and `agx eval plans` both decode with it, so the
    eval measures what `agx plan` does. `typed_links` (default: the role's config,
    roles.delta.typed_links): over a catalogue whose tools declare types, a task wired to the
    one before it uses a tool that takes that task's output."""
    if not _is_in_process(engine):
        return None
    if count_steps is None:
        count_steps = counts_steps(engine)
    if typed_links is None:
        typed_links = bool(getattr(getattr(engine, "role", None), "typed_links", True))
    return plan_gbnf(catalogue, max_tasks=max_tasks, count_steps=count_steps, typed_links=typed_links)


class Planner:
    def __init__(
        self,
        engine: Engine,
        catalogue: ToolCatalogue,
        repo_dir: str | Path | None = None,
        repair_rounds: int = 2,
        max_tasks: int = 10,
        max_deps: int = 4,
        max_tokens: int | None = None,
        prompt_style: str | None = None,
        count_steps: bool | None = None,
        typed_links: bool | None = None,
    ):
        self.engine = engine
        # agx/planning/prompt.py PROMPT_STYLES; default: the role's config (roles.delta.prompt_style),
        # where "auto" is the style the engine's adapter was trained with.
        style = prompt_style or getattr(getattr(engine, "role", None), "prompt_style", None)
        if style in (None, "auto"):
            style = adapter_prompt_style(getattr(engine, "adapter_path", None))
        self.prompt_style = style or DEFAULT_PROMPT_STYLE
        self.catalogue = catalogue
        self.repo_dir = Path(repo_dir) if repo_dir is not None else None
        self.repair_rounds = max(0, repair_rounds)
        self.max_tasks = max_tasks
        self.schema = plan_json_schema(catalogue, max_tasks=max_tasks, max_deps=max_deps)
        # In-process llama.cpp gets the stricter grammar (ids t1..tN, deps only backwards, and
        # for an adapter trained on numbered goals at least one task per step); remote servers only
        # understand a JSON schema.
        self.grammar = plan_grammar(engine, catalogue, max_tasks=max_tasks, count_steps=count_steps,
                                    typed_links=typed_links)
        self.max_tokens = max_tokens

    def messages_for(self, request: str) -> list[dict[str, str]]:
        context = repo_context(self.repo_dir) if self.repo_dir is not None else None
        return build_plan_messages(request, self.catalogue, context, max_tasks=self.max_tasks, style=self.prompt_style)

    def plan(
        self,
        request: str,
        on_event: EventCallback | None = None,
        cancel: CancelToken | None = None,
        plan_id: str | None = None,
    ) -> PlanResult:
        """Plan `request`; returns the best plan found with its errors (empty when valid)."""
        t0 = time.perf_counter()
        result = PlanResult(plan_id=plan_id or new_plan_id(), request=request, plan=None, plan_dict=None)
        emit = on_event or (lambda event: None)
        emit(PlanningStarted(result.plan_id, request=request))
        base_messages = self.messages_for(request)
        messages = base_messages
        for round_no in range(self.repair_rounds + 1):
            output = self._generate(messages, result, stream_events=(round_no == 0), emit=emit, t0=t0, cancel=cancel)
            if output is None:  # engine failure or cancel: result.errors says which
                break
            result.rounds = round_no
            errors = self._judge(output, result)
            if not errors or (cancel is not None and cancel.cancelled):
                break
            messages = repair_messages(base_messages, output, errors)
        result.stats.total_s = time.perf_counter() - t0
        emit(
            Planned(
                result.plan_id,
                plan=result.plan.model_dump() if result.plan is not None else (result.plan_dict or {}),
                errors=list(result.errors),
                repair_rounds=result.rounds,
                critical_path=result.critical_path,
                width=result.width,
            )
        )
        return result

    # -- one generation ---------------------------------------------------------------------
    def _generate(
        self,
        messages: list[dict[str, str]],
        result: PlanResult,
        *,
        stream_events: bool,
        emit: EventCallback,
        t0: float,
        cancel: CancelToken | None,
    ) -> str | None:
        if self.grammar is not None:
            request = ChatRequest(messages=messages, grammar=self.grammar, max_tokens=self.max_tokens, purpose="plan")
        else:
            request = ChatRequest(messages=messages, json_schema=self.schema, max_tokens=self.max_tokens, purpose="plan")
        parser = PlanStreamParser()
        try:
            stream = self.engine.chat(request, cancel)
            for piece in stream:
                for task in parser.feed(piece):
                    if result.stats.first_task_s is None:
                        result.stats.first_task_s = time.perf_counter() - t0
                    if stream_events:
                        emit(TaskAdded(result.plan_id, task=task))
        except EngineError as exc:
            result.errors = [f"Delta could not generate a plan: {exc}", *result.errors]
            return None
        result.stats.generations.append(stream.stats)
        result.raw_outputs.append(stream.text)
        if stream.stats.finish_reason == "cancelled":
            result.cancelled = True
            self._judge(stream.text, result)
            result.errors = ["planning was cancelled", *result.errors]
            return None
        return stream.text

    def _judge(self, output: str, result: PlanResult) -> list[str]:
        """Parse and validate one output; returns its errors (for the repair prompt).

        The output becomes the result's plan unless it failed to parse while an earlier round's
        did: a broken repair never hides a plan that at least had a shape. `result.errors`
        always describes the plan stored in `result`."""
        value, parse_error = parse_plan_text(output)
        if parse_error is not None:
            last = result.stats.generations[-1] if result.stats.generations else None
            if last is not None and last.finish_reason == "length":
                parse_error += " (generation hit max_tokens before the plan was complete)"
            report = ValidationReport(errors=[parse_error])
        else:
            report = validate_plan(value, self.catalogue)
        if report.plan is not None or result.plan is None:
            result.plan = report.plan
            result.plan_dict = value if isinstance(value, dict) else None
            result.errors = list(report.errors)
            result.critical_path, result.width, result.levels = report.critical_path, report.width, report.levels
        return report.errors
