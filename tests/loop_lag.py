"""How far a timing test may trust its own event loop, measured while the test runs.

The timing tests compare two ends of one wire: what a server (the simulator, a scripted
server) recorded it wrote and when, and when the client read it. Both run in the test's
event loop, so the only gap between a write and its read, or between a deadline and the
write it was due for, is time in which that loop did not get round to the callback: other
callbacks running, or the process not on a CPU at all (a busy machine). `LoopLag` measures
exactly that: a timer due every PERIOD records how late it fires. Tolerances are then
derived from what the machine did during the test, not guessed once for a quiet machine.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType

# Short enough that a stall of the loop cannot hide between two wake-ups for long; 500
# wake-ups a second cost well under 1 % of a core.
PERIOD = 0.002
# One callback's own work after its wake-up, before it takes its timestamp (an SSE event
# parsed, a chunk encoded and handed to the kernel): tens of microseconds on the
# development machine; 1 ms leaves an order of magnitude of room.
SLACK = 0.001


class LoopLag:
    """`async with LoopLag() as lag: ...`, then `lag.bound`: the most a callback waited.

    Any callback that became ready while the watcher ran waited for the pass of the loop
    in progress and, for a task woken by a timer or by I/O, for one more pass. A pass that
    kept the loop from running a ready callback kept the watcher's next timer (due within
    PERIOD) waiting as well, so one pass is at most `worst + PERIOD`, and a wait at most two
    such passes plus SLACK.
    """

    def __init__(self, period: float = PERIOD) -> None:
        self.period = period
        self.worst = 0.0  # seconds: the latest the watcher's timer fired
        self._task: asyncio.Task[None] | None = None

    @property
    def bound(self) -> float:
        return 2 * (self.worst + self.period) + SLACK

    async def __aenter__(self) -> LoopLag:
        self._task = asyncio.create_task(self._watch())
        await asyncio.sleep(0)  # the watcher's first timer is set before the test goes on
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.period
            await asyncio.sleep(self.period)
            self.worst = max(self.worst, loop.time() - due)

    def __repr__(self) -> str:  # shown by pytest when an assertion that uses it fails
        return f"LoopLag(worst={self.worst * 1000:.1f} ms, bound={self.bound * 1000:.1f} ms)"
