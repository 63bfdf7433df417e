"""Picking one plan among several drawn for the same request: the consensus rule that
`agx eval plans --samples N` measures (issue #15).

A small planner's greedy plan is often not its best one: with the shipped adapter, the best of
six plans drawn for a TaskBench request scores about 19 node-F1 points above the greedy plan
(README, Fine-tuning, "Sampled plans"). No gold is known at plan time, so the rule measured is
minimum Bayes risk decoding: keep the candidate with the highest summed similarity to the
others, where two plans are similar when they use the same tools and wire them the same way:

    similarity(a, b) = F1(tool sets of a and b) + F1(sets of (dep tool, task tool) edges)

Only valid plans compete while any exists; ties go to the earlier candidate, so the greedy plan
(candidate 0) stays whenever the samples do not out-vote it. Measured, it picks worse plans than
greedy decoding on both held-out sets, so the planner does not use it.
"""

from __future__ import annotations

from collections.abc import Sequence

from agx.planning.plan import Plan
from agx.training.metrics import set_f1

PlanShape = tuple[frozenset[str], frozenset[tuple[str, str]]]


def plan_shape(plan: Plan) -> PlanShape:
    """A plan's tools and its (dependency's tool, task's tool) edges, as sets."""
    tool_of = {t.id: t.tool for t in plan.tasks}
    edges = {(tool_of[d], t.tool) for t in plan.tasks for d in t.deps if d in tool_of}
    return frozenset(tool_of.values()), frozenset(edges)


def similarity(a: PlanShape, b: PlanShape) -> float:
    """How alike two plan shapes are: tool-set F1 plus edge-set F1 (0 to 2)."""
    return set_f1(a[0], b[0]) + set_f1(a[1], b[1])


def consensus_index(plans: Sequence[Plan | None]) -> int | None:
    """The index of the plan the others agree with most; None when no plan is given.

    `plans[i]` is None for a candidate that did not validate; such candidates neither compete
    nor vote. With no valid candidate the first one (the greedy plan) is returned."""
    if not plans:
        return None
    valid = [i for i, p in enumerate(plans) if p is not None]
    if not valid:
        return 0
    shapes = {i: plan_shape(plans[i]) for i in valid}

    def support(i: int) -> float:
        return sum(similarity(shapes[i], shapes[j]) for j in valid if j != i)

    # max() keeps the first of equal scores: the earliest candidate wins ties.
    return max(valid, key=support)
