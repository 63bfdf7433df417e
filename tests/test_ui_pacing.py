"""Frame pacing: max_fps always; a CPU budget for the UI thread while a local decode has no spare core.

The clocks are injected (a list of readings) so the arithmetic is checked exactly; the effect
on decode speed is measured by bench/bench_ui_decode.py, not here."""

from __future__ import annotations

from agx.ui.pacing import MAX_INTERVAL_S, FramePacer, has_spare_core


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _pacer(budget=0.05, fps=30):
    wall, cpu = Clock(), Clock()
    return FramePacer(fps, budget, clock=wall, cpu_clock=cpu), wall, cpu


def _frames(pacer, wall, cpu, cost, n=20):
    for _ in range(n):
        wall.t += pacer.interval()
        cpu.t += cost
        pacer.frame_drawn()


def test_without_contention_only_max_fps_applies():
    pacer, wall, cpu = _pacer()
    _frames(pacer, wall, cpu, cost=0.020)
    assert abs(pacer.interval() - 1 / 30) < 1e-9


def test_contended_frames_are_spaced_to_the_budget():
    pacer, wall, cpu = _pacer(budget=0.05)
    pacer.generation_started("g", contended=True)
    _frames(pacer, wall, cpu, cost=0.008, n=40)
    assert abs(pacer.frame_cost_s - 0.008) < 1e-4
    assert abs(pacer.interval() - 0.008 / 0.05) < 1e-3  # 160 ms: the UI uses 5% of a core
    cheap, w2, c2 = _pacer(budget=0.05)
    cheap.generation_started("g", contended=True)
    _frames(cheap, w2, c2, cost=0.0005, n=40)
    assert abs(cheap.interval() - 1 / 30) < 1e-9  # cheap frames: max_fps is the limit
    costly, w3, c3 = _pacer(budget=0.05)
    costly.generation_started("g", contended=True)
    _frames(costly, w3, c3, cost=0.2, n=40)
    assert costly.interval() == MAX_INTERVAL_S  # text still moves twice a second
    pacer.generation_started("other", contended=False)  # e.g. a remote model: no budget for it
    pacer.generation_ended("g")
    assert abs(pacer.interval() - 1 / 30) < 1e-9


def test_idle_gap_is_not_counted_as_a_frame():
    pacer, wall, cpu = _pacer()
    pacer.generation_started("g", contended=True)
    _frames(pacer, wall, cpu, cost=0.004)
    before = pacer.frame_cost_s
    wall.t += 30.0  # the user read for half a minute; the UI did other work meanwhile
    cpu.t += 1.0
    pacer.frame_drawn()
    assert pacer.frame_cost_s == before


def test_delay_counts_from_the_last_frame():
    pacer, wall, cpu = _pacer(fps=10)
    wall.t = 5.0
    pacer.frame_drawn()
    wall.t = 5.04
    assert abs(pacer.delay() - 0.06) < 1e-9
    wall.t = 5.2
    assert pacer.delay() < 0


def test_spare_core():
    assert not has_spare_core(2, cpu_count=2)
    assert has_spare_core(1, cpu_count=2)
    assert not has_spare_core(10, cpu_count=10)  # llama.cpp's default: every physical core
    assert has_spare_core(8, cpu_count=10)
    assert has_spare_core(0, cpu_count=2)  # remote or fully offloaded: no CPU decode threads
