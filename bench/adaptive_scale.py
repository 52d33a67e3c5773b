"""Adaptive probing at scale: what deciding one probe's next interval costs the event loop.

The exporter's scheduler calls `AdaptiveIntervals.observe` when a probe's result is in and
`AdaptiveIntervals.choose` when it schedules that key again, both on the event loop that
also timestamps every streamed token of the probes in flight: a call that takes
milliseconds delays their first-token timestamps by as much. Each decision compares the
target with its rivals (does it lead a scenario, is a competitor within the margin), so
its cost grows with the number of targets.

For N targets under the example config's `[performance]` (two scenarios, latency watch
and hourly throughput, 20m window), the policy is filled as a running exporter fills it
(four watch rounds and one throughput round, spread over the window on an injected
clock), then one more watch round is timed: observe + choose per probe, and choose alone
for the throughput keys. Figures: CPU per probe (process_time, median [min..max] over
--runs rounds) and the slowest single call (how long one decision holds the loop).

    python bench/adaptive_scale.py     # a few seconds
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import Summary, print_machine, print_table  # noqa: E402
from routing_worlds import Truth, draw_probe  # noqa: E402

from perfgen.config import load_config  # noqa: E402
from perfgen.exporter.adaptive import AdaptiveIntervals  # noqa: E402
from perfgen.exporter.result import ProbeResult  # noqa: E402

CONFIG = Path(__file__).resolve().parent.parent / "examples" / "config.example.toml"
WATCH_SECONDS = 300.0  # the example's min_interval_minutes
STEADY = Truth(ttft_median=0.55, ttft_sigma=0.4, decode=80.0, error=0.01)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def probe_result(model: str, module: str, at: float, rng: random.Random) -> ProbeResult:
    """A probe of a steady model drawn as the routing benchmark draws them (1 % errors)."""
    tokens = 256 if module == "throughput" else 16
    return draw_probe(
        STEADY, rng, provider="p", model=model, module=module, max_tokens=tokens, started_at=at
    )


def watch_round(
    policy: AdaptiveIntervals, clock: Clock, models: list[str], rng: random.Random
) -> list[float]:
    """One latency probe per target, spread over the watch interval; each call's CPU."""
    costs = []
    for model in models:
        clock.now += WATCH_SECONDS / len(models)
        key = ("p", model, "latency")
        result = probe_result(model, "latency", clock.now, rng)
        start = time.process_time()
        policy.observe(key, result)
        policy.choose(key)
        costs.append(time.process_time() - start)
    return costs


def measure(targets: int, runs: int) -> list[str]:
    performance = load_config(CONFIG).performance
    clock = Clock()
    policy = AdaptiveIntervals(performance, clock)
    rng = random.Random(targets)
    models = [f"model-{i:04d}" for i in range(targets)]
    for _ in range(4):
        watch_round(policy, clock, models, rng)
    for model in models:
        policy.observe(
            ("p", model, "throughput"), probe_result(model, "throughput", clock.now, rng)
        )
    per_probe: list[float] = []
    slowest: list[float] = []
    choose_only: list[float] = []
    for _ in range(runs):
        costs = watch_round(policy, clock, models, rng)
        per_probe.append(sum(costs) / len(costs))
        slowest.append(max(costs))
        start = time.process_time()
        for model in models:
            policy.choose(("p", model, "throughput"))
        choose_only.append((time.process_time() - start) / len(models))
    return [
        str(targets),
        Summary(per_probe).fmt(1e3, 3),
        Summary(slowest).fmt(1e3, 2),
        Summary(choose_only).fmt(1e3, 3),
        f"{Summary(per_probe).median * targets:.2f}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed watch rounds per size")
    parser.add_argument(
        "--targets", default="100,300,1000", help="comma-separated numbers of targets"
    )
    args = parser.parse_args()
    print_machine()
    print(f"# config {CONFIG}: {args.runs} timed watch rounds per size")
    print()
    print_table(
        [
            "targets",
            "observe + choose per probe, ms",
            "slowest call, ms",
            "choose (throughput key), ms",
            "CPU per watch round, s",
        ],
        [measure(int(n), args.runs) for n in args.targets.split(",")],
    )


if __name__ == "__main__":
    main()
