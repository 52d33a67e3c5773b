"""`perfgen demo --scale-out`: the distributed path narrated (logic in stack/scaleout.py)."""

from __future__ import annotations

import shutil
import signal
import tempfile
import time
from pathlib import Path

from perfgen.stack.demo import AlertFeed, StoryTimeout, describe_alert
from perfgen.stack.demo_cli import Narrator
from perfgen.stack.processes import BinaryMissing, ProcessFailed, find_binary
from perfgen.stack.scaleout import ScaleOutStack, run_scaleout_story


def run_scaleout_demo(
    workdir: Path | None, duration: float, keep_running: bool, quiet: bool
) -> int:
    """The exit code of `perfgen demo --scale-out` (the same codes as `perfgen demo`)."""
    narrator = Narrator(quiet)
    try:
        for binary in ("prometheus", "alertmanager", "victoria-metrics", "vmalert"):
            find_binary(binary)
    except BinaryMissing as exc:
        narrator.error(str(exc))
        return 1
    temporary = workdir is None
    root = Path(tempfile.mkdtemp(prefix="perfgen-scaleout-")) if workdir is None else workdir
    deadline = time.monotonic() + duration

    def time_left() -> float:
        return max(0.0, deadline - time.monotonic())

    previous_sigterm = signal.signal(signal.SIGTERM, signal.default_int_handler)
    previous_sigint = signal.getsignal(signal.SIGINT)
    stack = ScaleOutStack(root, log=lambda message: narrator.say(f"started {message}"))
    feed = AlertFeed(stack.receiver)

    def tick() -> None:
        for alert in feed.new():
            narrator.say(f"pager: {describe_alert(alert)}")

    stack.tick = tick
    exit_code, completed = 1, False
    try:
        narrator.say(f"perfgen demo --scale-out: work directory {root}")
        stack.start()
        width = max(len(name) for name in stack.urls())
        narrator.say(
            "Open while it runs:\n"
            + "\n".join(f"    {k.ljust(width)}  {v}" for k, v in stack.urls().items())
        )
        result = run_scaleout_story(
            stack, say=narrator.say, progress=narrator.say, time_left=time_left
        )
        completed, exit_code = True, 0
        narrator.always(
            f"Story complete in {result.seconds['total']:.0f}s: "
            + ", ".join(f"{r} routed {p} first" for r, p in result.primaries.items())
            + f"; {result.degraded} degraded in {result.degraded_region}, alerted "
            f"({describe_alert(result.alert)}), demoted there only"
        )
        if keep_running:
            narrator.always("Everything stays up; press Ctrl-C to stop.")
            while True:
                time.sleep(1.0)
                stack.check_alive()
                stack.tick()
    except KeyboardInterrupt:
        narrator.always("interrupted; stopping everything")
        exit_code = 0 if completed else 130
    except StoryTimeout as exc:
        ran_out = "--duration ran out before the story finished: " if time_left() <= 0 else ""
        narrator.error(f"{ran_out}{exc}")
    except (ProcessFailed, BinaryMissing) as exc:
        narrator.error(str(exc))
    finally:
        # A second Ctrl-C must not cut the shutdown short and leave processes behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        stack.stop()
        signal.signal(signal.SIGINT, previous_sigint)
        signal.signal(signal.SIGTERM, previous_sigterm)
        if temporary and exit_code == 0:
            shutil.rmtree(root, ignore_errors=True)
        else:
            narrator.always(f"logs, configs and data kept in {root}")
        narrator.say("stopped")
    return exit_code
