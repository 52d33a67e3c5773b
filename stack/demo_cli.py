"""`perfgen demo`: the whole pipeline on this machine, narrated (logic in stack/demo.py)."""

from __future__ import annotations

import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

from perfgen.stack.demo import (
    AlertFeed,
    DemoStack,
    StoryResult,
    describe_alert,
    read_chain,
    run_story,
)
from perfgen.stack.processes import BinaryMissing, ProcessFailed, find_binary
from perfgen.stack.running import RunningStack, StoryTimeout
from perfgen.stack.webhook import WebhookReceiver

# Grafana is not started here (the demo needs only Debian's Prometheus packages).
GRAFANA_HINT = (
    "    (No Grafana here: the dashboards are in grafana/; "
    "`docker-compose --profile simulator up -d --build`\n"
    "    runs them with the whole stack on http://127.0.0.1:3000.)"
)


class Narrator:
    """Timestamped lines relative to the demo's start; --quiet keeps only the outcome."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.started = time.monotonic()

    def stamp(self) -> str:
        elapsed = int(time.monotonic() - self.started)
        return f"[{elapsed // 60:d}:{elapsed % 60:02d}]"

    def say(self, message: str) -> None:
        if not self.quiet:
            self.always(message)

    def always(self, message: str) -> None:
        click.echo(f"{self.stamp()} {message}")

    def error(self, message: str) -> None:
        click.echo(f"{self.stamp()} error: {message}", err=True)


def _print_urls(narrator: Narrator, stack: DemoStack, force: bool = False) -> None:
    show = narrator.always if force else narrator.say
    width = max(len(name) for name in stack.urls())
    show(
        "Open while it runs:\n"
        + "\n".join(f"    {name.ljust(width)}  {url}" for name, url in stack.urls().items())
        + "\n"
        + GRAFANA_HINT
    )


def _summary(narrator: Narrator, result: StoryResult) -> None:
    after = "|".join(str(r) for r in result.chain_after)
    narrator.always(
        f"Story complete in {result.seconds['total']:.0f}s: {result.degraded} degraded, "
        f'alerted ({describe_alert(result.alert)}), demoted; [router] default = "{after}"; '
        f"the restarted proxy stand-in served {result.served.get('provider')}/"
        f"{result.served.get('model')}"
    )


def _keep_running(narrator: Narrator, stack: DemoStack) -> None:
    """Stay up until Ctrl-C, narrating new alerts and route changes as they happen."""
    _print_urls(narrator, stack, force=True)
    narrator.always("Everything stays up; press Ctrl-C to stop.")
    chain = read_chain(stack.config_path)
    while True:
        time.sleep(1.0)
        stack.check_alive()
        stack.tick()
        now = read_chain(stack.config_path)
        if now != chain:
            chain = now
            narrator.always(
                f'generator rewrote [router] default = "{"|".join(str(r) for r in now)}"'
            )


@click.command()
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep configs, logs and data here (default: a temporary directory, "
    "removed after a successful run).",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=10),
    default=420.0,
    show_default=True,
    metavar="SECONDS",
    help="Stop after this long even if the story has not finished (exit 1).",
)
@click.option(
    "--keep-running", is_flag=True, help="After the story, leave everything up until Ctrl-C."
)
@click.option("--quiet", is_flag=True, help="Print only the outcome and errors.")
@click.option(
    "--scale-out",
    is_flag=True,
    help="Two regions instead: agent-mode Prometheus per region remote-writing to "
    "VictoriaMetrics, vmalert, per-region generators (docs/scale-out.md).",
)
def demo(
    workdir: Path | None, duration: float, keep_running: bool, quiet: bool, scale_out: bool
) -> None:
    """Run the whole pipeline on this machine against simulated providers.

    \b
    Starts, on free 127.0.0.1 ports: the simulator (3 providers, 7 models), the
    exporter, Prometheus with perfgen's rules, Alertmanager with a webhook receiver,
    and `perfgen generate` rewriting a copy of the demo proxy config every 10 s.
    Then: rankings, a degraded primary, its alert, its demotion (about 75 s).

    Needs the prometheus and prometheus-alertmanager packages. Exit 0 when the story
    completed, 1 on error or when --duration ran out first, 130 on Ctrl-C before the
    story finished.
    """
    if scale_out:
        from perfgen.stack.scaleout_cli import run_scaleout_demo

        sys.exit(run_scaleout_demo(workdir, duration, keep_running, quiet))
    narrator = Narrator(quiet)

    def story(stack: DemoStack, time_left: Callable[[], float]) -> None:
        _print_urls(narrator, stack)
        result = run_story(stack, say=narrator.say, progress=narrator.say, time_left=time_left)
        _summary(narrator, result)

    sys.exit(
        run_narrated(
            narrator,
            "perfgen demo",
            DemoStack,
            story,
            lambda stack: _keep_running(narrator, stack),
            workdir=workdir,
            duration=duration,
            keep_running=keep_running,
        )
    )


S = TypeVar("S", bound=RunningStack)


def run_narrated(
    narrator: Narrator,
    name: str,
    stack_type: type[S],
    story: Callable[[S, Callable[[], float]], None],
    stay_up: Callable[[S], None],
    *,
    workdir: Path | None,
    duration: float,
    keep_running: bool,
) -> int:
    """Run a stack's story for a person; the exit code of `perfgen demo`.

    0 when the story completed, 1 on error or when `duration` ran out first, 130 on
    Ctrl-C before the story finished. Every process is stopped on the way out, whatever
    happened; the work directory is kept unless it was temporary and all went well.
    """
    try:
        for binary in stack_type.binaries:
            find_binary(binary)  # before anything starts; BinaryMissing says how to install
    except BinaryMissing as exc:
        narrator.error(str(exc))
        return 1

    temporary = workdir is None
    prefix = name.replace("perfgen ", "perfgen-").replace(" --", "-")
    root = Path(tempfile.mkdtemp(prefix=f"{prefix}-")) if workdir is None else workdir
    deadline = time.monotonic() + duration

    def time_left() -> float:
        return max(0.0, deadline - time.monotonic())

    # SIGTERM ends the demo like Ctrl-C: through the `finally` that stops every process.
    previous_sigterm = signal.signal(signal.SIGTERM, signal.default_int_handler)
    previous_sigint = signal.getsignal(signal.SIGINT)
    receiver = WebhookReceiver()
    feed = AlertFeed(receiver)

    def tick() -> None:
        for alert in feed.new():
            narrator.say(f"pager: {describe_alert(alert)}")

    stack = stack_type(
        root, log=lambda message: narrator.say(f"started {message}"), receiver=receiver, tick=tick
    )
    exit_code, completed = 1, False
    try:
        narrator.say(f"{name}: work directory {root}")
        stack.start()
        story(stack, time_left)
        completed, exit_code = True, 0
        if keep_running:
            stay_up(stack)
    except KeyboardInterrupt:
        narrator.always("interrupted; stopping everything")
        exit_code = 0 if completed else 130
    except StoryTimeout as exc:
        if time_left() <= 0:
            narrator.error(f"--duration {duration:g}s ran out before the story finished: {exc}")
        else:
            narrator.error(str(exc))
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
