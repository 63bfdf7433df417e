"""When the next frame of streamed text may be drawn.

Streamed tokens and task output are buffered (messages.FrameCoalescer) and drawn at most once
per frame. Two limits space the frames:

- `ui.max_fps`, always;
- while a local model decodes on the CPU with no core to spare (llama.cpp's threads fill the
  machine), a CPU budget: the UI thread may use at most `ui.render_budget` of one core.
  llama.cpp's threads meet at a barrier for every operation, so each millisecond the UI
  thread takes from one of them stalls all of them; on a 2-core machine a 30 fps shell halved
  decode speed. The pacer measures the UI thread's CPU time between frames (everything it did:
  layout, compositing, input) and spaces frames so that this stays under the budget.

Pure logic with injectable clocks, so it is tested without timing anything.
"""

from __future__ import annotations

import os
import time
from typing import Callable

MAX_INTERVAL_S = 0.5  # however costly frames are, text still moves twice a second
_SMOOTHING = 0.3  # weight of the newest frame in the cost estimate


def has_spare_core(decode_threads: int, cpu_count: int | None = None) -> bool:
    """Whether a model decoding with `decode_threads` CPU threads leaves a core for the UI."""
    cores = cpu_count if cpu_count is not None else (os.cpu_count() or 1)
    return decode_threads <= 0 or decode_threads <= cores - 1


class FramePacer:
    def __init__(self, max_fps: int, render_budget: float, *,
                 clock: Callable[[], float] = time.monotonic,
                 cpu_clock: Callable[[], float] = time.thread_time) -> None:
        self.min_interval = 1.0 / max_fps
        self.budget = render_budget
        self._clock, self._cpu_clock = clock, cpu_clock
        self._contended: set = set()  # keys of generations running now that leave no spare core
        self.last_flush: float | None = None  # when the last frame was drawn (wall clock)
        self._last_cpu = 0.0  # the UI thread's CPU time then
        self.frame_cost_s = 0.0  # smoothed UI-thread CPU per frame

    # -- what is decoding -------------------------------------------------------------------
    def generation_started(self, key, contended: bool) -> None:
        """A generation (e.g. ("chat", 3)) began; `contended`: it leaves no core to spare."""
        if contended:
            self._contended.add(key)

    def generation_ended(self, key) -> None:
        self._contended.discard(key)

    @property
    def contended(self) -> bool:
        return bool(self._contended)

    # -- frames ------------------------------------------------------------------------------
    def interval(self) -> float:
        """Seconds from one frame to the next under both limits."""
        if not self.contended or self.budget >= 1.0:
            return self.min_interval
        return min(MAX_INTERVAL_S, max(self.min_interval, self.frame_cost_s / self.budget))

    def delay(self) -> float:
        """Seconds to wait before the next frame may be drawn (<= 0: now)."""
        if self.last_flush is None:
            return 0.0
        return self.last_flush + self.interval() - self._clock()

    def frame_drawn(self) -> None:
        """Call once per drawn frame, on the UI thread."""
        now, cpu = self._clock(), self._cpu_clock()
        if self.last_flush is not None and now - self.last_flush <= 2 * MAX_INTERVAL_S:
            # The UI thread's CPU since the last frame: that frame's layout and compositing plus
            # whatever else ran (a gap longer than any frame interval was idle, not a frame).
            cost = cpu - self._last_cpu
            self.frame_cost_s += _SMOOTHING * (cost - self.frame_cost_s)
        self.last_flush, self._last_cpu = now, cpu
