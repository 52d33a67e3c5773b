"""`perfgen demo --scale-out`: the distributed path narrated (logic in stack/scaleout.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from perfgen.stack.demo import describe_alert
from perfgen.stack.demo_cli import Narrator, run_narrated
from perfgen.stack.scaleout import ScaleOutStack, run_scaleout_story


def run_scaleout_demo(
    workdir: Path | None, duration: float, keep_running: bool, quiet: bool
) -> int:
    """The exit code of `perfgen demo --scale-out` (the same codes as `perfgen demo`)."""
    narrator = Narrator(quiet)

    def story(stack: ScaleOutStack, time_left: Callable[[], float]) -> None:
        width = max(len(name) for name in stack.urls())
        narrator.say(
            "Open while it runs:\n"
            + "\n".join(f"    {k.ljust(width)}  {v}" for k, v in stack.urls().items())
        )
        result = run_scaleout_story(
            stack, say=narrator.say, progress=narrator.say, time_left=time_left
        )
        narrator.always(
            f"Story complete in {result.seconds['total']:.0f}s: "
            + ", ".join(f"{r} routed {p} first" for r, p in result.primaries.items())
            + f"; {result.degraded} degraded in {result.degraded_region}, alerted "
            f"({describe_alert(result.alert)}), demoted there only"
        )

    def stay_up(stack: ScaleOutStack) -> None:
        narrator.always("Everything stays up; press Ctrl-C to stop.")
        while True:
            time.sleep(1.0)
            stack.check_alive()
            stack.tick()

    return run_narrated(
        narrator,
        "perfgen demo --scale-out",
        ScaleOutStack,
        story,
        stay_up,
        workdir=workdir,
        duration=duration,
        keep_running=keep_running,
    )
