"""Diagnostic: what blocks a prober's event loop for milliseconds under sustained load?

A callback that runs for milliseconds delays every first token that arrives meanwhile, so
the p99 TTFT error can be no better than the longest pauses. This runs each prober under
sustained load (--streams streams of 50 tok/s, new stream as soon as one ends) and reports:

- cyclic-GC pauses, timed by gc.callbacks in the prober (cheap, no debug mode): how many
  collections per generation, their total and their longest;
- the TTFT error p99 (client first token seen - server first_token_sent);
- the same with the collector off (`gc.disable()`), to show what the pauses cost, and
  optionally (--gc-modes) with `gc.freeze()` after set-up, or freeze plus a 20 000
  gen-0 threshold;
- with --slow-callbacks, asyncio's debug mode also logs every callback slower than
  --threshold-ms (debug mode slows the loop: compare those rows only with each other).

`--rt` runs prober and simulator SCHED_FIFO (root) so that other tenants of a shared
machine cannot preempt them and only the prober's own pauses remain.

    python bench/diag_slow_callbacks.py --rt        # about 40 s
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    Simulator,
    Summary,
    Worker,
    match_truth,
    percentile,
    print_machine,
    print_table,
    simulator_toml,
)

_TOOK = re.compile(r"Executing <(\w+) (.{0,90}).*took ([0-9.]+) seconds")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--probers",
        default="perfgen,perfgen_shared,raw",
        help="also perfgen_exporter (the exporter's session and GC settings; "
        "its --gc-modes `on` row is already tuned)",
    )
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rt", action="store_true")
    parser.add_argument(
        "--gc-modes",
        default="on,off",
        help="on, off (gc.disable), freeze (gc.freeze after set-up), big0 "
        "(freeze + gc.set_threshold(20_000, 20, 100))",
    )
    parser.add_argument("--slow-callbacks", action="store_true")
    parser.add_argument("--threshold-ms", type=float, default=1.5)
    args = parser.parse_args()
    ncpu = os.cpu_count() or 1
    pin = ncpu >= 2
    print_machine()
    config = simulator_toml(
        [{"name": "m", "ttft_ms": 50, "tokens_per_second": 50, "output_tokens": 100}]
    )
    rows = []
    slow_rows = []
    with Simulator(config, cpus=str(ncpu - 1) if pin else None) as sim:
        for kind in args.probers.split(","):
            for gc_mode in args.gc_modes.split(","):
                extra = ["--gc", gc_mode]
                if args.slow_callbacks:
                    extra += ["--slow-callback-ms", str(args.threshold_ms)]
                with Worker(kind, sim.url, cpu=0 if pin else None, extra=extra) as worker:
                    if args.rt:
                        for pid in (worker.pid, sim.pid):
                            subprocess.run(["chrt", "-f", "-p", "10", str(pid)], check=True)
                    worker.run(mode="burst", concurrency=50, max_tokens=4)
                    p99s, counts, totals, longest, preempted = [], [], [], [], []
                    before = len(_TOOK.findall(worker.output()))
                    for _ in range(args.runs):
                        answer = worker.run(
                            mode="sustained",
                            streams=args.streams,
                            seconds=args.seconds,
                            max_tokens=50,
                            stream_seconds=1.05,
                        )
                        pairs = match_truth(answer["streams"], sim.records())
                        p99s.append(
                            percentile([s["first"] - r["first_token_sent"] for s, r in pairs], 99)
                        )
                        gcs = answer["gc"].values()
                        counts.append(sum(g[0] for g in gcs))
                        totals.append(sum(g[1] for g in gcs) / answer["wall"])
                        longest.append(max((g[2] for g in gcs), default=0.0))
                        preempted.append(answer["preempted"])
                    gen2 = answer["gc"].get("2", [0, 0.0, 0.0])
                    rows.append(
                        [
                            kind,
                            gc_mode,
                            Summary(counts).fmt(1, 0),
                            f"{int(gen2[0])} / {gen2[2] * 1000:.1f}",
                            Summary(longest).fmt(1000, 1),
                            Summary(totals).fmt(100, 2),
                            Summary(p99s).fmt(1000, 2),
                            Summary(preempted).fmt(1, 0),
                        ]
                    )
                    if args.slow_callbacks:
                        slow = _TOOK.findall(worker.output())[before:]
                        took = sorted(float(t) * 1000 for _, _, t in slow)
                        kinds: dict[str, int] = {}
                        for what, detail, _ in slow:
                            name = detail.split(" ")[0] if what == "Handle" else "Task step"
                            kinds[name] = kinds.get(name, 0) + 1
                        slow_rows.append(
                            [
                                kind,
                                gc_mode,
                                len(slow),
                                f"{took[-1]:.0f}" if took else "-",
                                ", ".join(f"{k} x{v}" for k, v in kinds.items()),
                            ]
                        )
    print()
    print(
        f"{args.streams} sustained streams, {args.seconds:g} s per run, {args.runs} runs, "
        f"{'SCHED_FIFO' if args.rt else 'normal priority'}; median [min..max] over runs"
    )
    print_table(
        [
            "prober",
            "gc",
            "collections/run",
            "gen2 in last run: n / longest ms",
            "longest pause ms",
            "GC share of wall %",
            "TTFT err p99 ms",
            "preempted",
        ],
        rows,
    )
    if slow_rows:
        print()
        print(f"callbacks slower than {args.threshold_ms:g} ms (asyncio debug mode, all runs)")
        print_table(["prober", "gc", "slow callbacks", "longest ms", "which"], slow_rows)


if __name__ == "__main__":
    main()
