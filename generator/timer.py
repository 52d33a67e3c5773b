"""Run a function every DURATION with jitter until SIGTERM or SIGINT.

Jitter spreads many generators (one per proxy) so they do not hit Prometheus in
step. A signal never interrupts a run half-way: it sets an event, the current run
finishes (its file write is atomic anyway) and the loop returns.
"""

from __future__ import annotations

import random
import signal
import threading
from collections.abc import Callable
from types import FrameType


def next_delay(interval: float, jitter: float, rng: random.Random | None = None) -> float:
    """`interval` spread uniformly by +-`jitter` (a fraction, 0.1 = 10 %)."""
    spread = interval * max(0.0, min(jitter, 1.0))
    return max(0.0, interval + (rng or random).uniform(-spread, spread))


def run_every(
    interval: float,
    jitter: float,
    run: Callable[[], object],
    stop: threading.Event | None = None,
    install_signals: bool = True,
) -> None:
    """Call `run()` now and then every interval (+- jitter) until `stop` is set."""
    stop = stop or threading.Event()
    previous: dict[int, object] = {}
    if install_signals and threading.current_thread() is threading.main_thread():

        def handler(signum: int, frame: FrameType | None) -> None:
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, handler)
    try:
        while not stop.is_set():
            run()
            stop.wait(next_delay(interval, jitter))
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)  # type: ignore[arg-type]
