"""Fidelity: how much delay does each prober add to what it measures?

Runs the simulator in its own process (pinned to the last CPU) and each prober in its own
process (pinned to CPU 0), then, at 1, 50 and 200 concurrent streams of 50 tokens/s, compares
what the prober reports with the simulator's ground truth (`GET /-/requests`):

  TTFT error      = client_first_token_seen - server_first_token_sent   (shared monotonic clock)
                        For perfgen, client_first_token_seen = t0 + reported ttft, with perfgen's
                    own t0 (its trace hook's timestamp, read back by a bench trace hook).
  reported - true = reported_ttft - (server_first_token_sent - server_received): also holds
                    the request's transit and the server's accept queue.
  decode error    = reported_tps / true_tps - 1, true_tps = (tokens_sent - 1) /
                    (last_token_sent - first_token_sent).

Each cell is the median [min..max] over --runs runs of that run's percentile; the probers
alternate run by run against the same simulator, so a ratio to the SDK is from one run.

    python bench/fidelity.py            # about 2 minutes
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    CpuMeter,
    Simulator,
    Summary,
    Worker,
    match_truth,
    percentile,
    print_machine,
    print_table,
    simulator_toml,
    true_tps,
    true_ttft,
)


def run_metrics(
    streams: list[dict[str, Any]], truth: dict[str, dict[str, Any]]
) -> dict[str, float]:
    pairs = match_truth(streams, truth)
    lag = [s["first"] - r["first_token_sent"] for s, r in pairs if s.get("first") is not None]
    rep = [s["ttft"] - true_ttft(r) for s, r in pairs]
    transit = [r["received"] - s["t0"] for s, r in pairs if s.get("t0") is not None]
    tps = [s["tps"] / true_tps(r) - 1 for s, r in pairs if s.get("tps")]
    return {
        "lag_p50": percentile(lag, 50),
        "lag_p99": percentile(lag, 99),
        "rep_p50": percentile(rep, 50),
        "rep_p99": percentile(rep, 99),
        "transit_p50": percentile(transit, 50),
        "transit_p99": percentile(transit, 99),
        "tps_p50": percentile(tps, 50),
        "tps_p99": percentile([abs(v) for v in tps], 99),
        "failed": float(len(streams) - len(pairs)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--levels", default="1,50,200", help="concurrent streams per level")
    parser.add_argument(
        "--probers",
        default="perfgen,sdk,perfgen_shared,perfgen_exporter,bare",
        help="perfgen (own session per probe, as `perfgen probe`), "
        "perfgen_shared (the exporter's one keep-alive session), "
        "perfgen_exporter (that session and the exporter's GC settings), "
        "sdk (openai SDK), bare (aiohttp + json.loads)",
    )
    parser.add_argument("--tokens", type=int, default=25, help="tokens per stream")
    parser.add_argument("--tps", type=float, default=50.0, help="tokens/s of every stream")
    parser.add_argument("--ttft-ms", type=float, default=100.0)
    parser.add_argument(
        "--sequential",
        type=int,
        default=5,
        help="streams one after another per run at concurrency 1",
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    parser.add_argument(
        "--rt", action="store_true", help="diagnostic: run probers and simulator SCHED_FIFO (root)"
    )
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    kinds = args.probers.split(",")
    ncpu = os.cpu_count() or 1
    pin = not args.no_pin and ncpu >= 2
    sim_cpus = str(ncpu - 1) if pin else None
    prober_cpu = 0 if pin else None

    print_machine()
    print(
        f"# fidelity: {args.tokens} tokens at {args.tps:g} tok/s per stream, ttft "
        f"{args.ttft_ms:g} ms, runs={args.runs}, pinned={pin} (simulator cpu {sim_cpus}, "
        f"probers cpu {prober_cpu}), {'SCHED_FIFO' if args.rt else 'normal priority'}"
    )
    config = simulator_toml(
        [
            {
                "name": "m",
                "ttft_ms": args.ttft_ms,
                "tokens_per_second": args.tps,
                "output_tokens": args.tokens,
            }
        ]
    )
    started = time.monotonic()
    results: dict[tuple[int, str], list[dict[str, float]]] = {}
    sim_share: dict[int, list[float]] = {}
    with Simulator(config, cpus=sim_cpus) as sim:
        workers: dict[str, Worker] = {}
        try:
            for kind in kinds:
                workers[kind] = Worker(kind, sim.url, cpu=prober_cpu)
                if args.rt:
                    # Diagnostic: SCHED_FIFO, so other tenants of a shared machine cannot
                    # preempt the prober or the simulator (root; both mostly sleep).
                    for pid in (workers[kind].pid, sim.pid):
                        subprocess.run(["chrt", "-f", "-p", "10", str(pid)], check=True)
            # Warm-up: imports, lazy paths, and a pool of connections for the largest level.
            for worker in workers.values():
                worker.run(mode="burst", concurrency=max(levels), max_tokens=4)
            for level in levels:
                sequential = args.sequential if level == 1 else 1
                for rep in range(args.runs):
                    order = kinds if rep % 2 == 0 else kinds[::-1]
                    for kind in order:
                        with CpuMeter(sim) as meter:
                            answer = workers[kind].run(
                                mode="burst",
                                concurrency=level,
                                sequential=sequential,
                                max_tokens=args.tokens,
                            )
                        sim_share.setdefault(level, []).append(meter.share)
                        truth = sim.records(limit=4 * level * sequential + 100)
                        metrics = run_metrics(answer["streams"], truth)
                        metrics["preempted"] = float(answer.get("preempted", 0))
                        results.setdefault((level, kind), []).append(metrics)
                        failed = [s for s in answer["streams"] if not s.get("ok")]
                        if failed:
                            print(
                                f"# {kind} c={level}: {len(failed)} failed, e.g. "
                                f"{failed[0].get('error')}",
                                file=sys.stderr,
                            )
        finally:
            for worker in workers.values():
                worker.stop()

    ms = 1000.0
    rows = []
    for level in levels:
        for kind in kinds:
            runs = results[(level, kind)]

            def cell(
                key: str, scale: float = ms, digits: int = 2, runs: list[dict[str, float]] = runs
            ) -> str:
                return Summary(r[key] for r in runs).fmt(scale, digits)

            rows.append(
                [
                    level,
                    kind,
                    cell("lag_p50"),
                    cell("lag_p99"),
                    cell("rep_p50"),
                    cell("rep_p99"),
                    cell("transit_p99"),
                    cell("tps_p50", 100),
                    cell("tps_p99", 100),
                    cell("preempted", 1, 0),
                    int(sum(r["failed"] for r in runs)),
                ]
            )
    print()
    print(
        "TTFT error = client first token seen - server first_token_sent (ms); "
        "reported-true = reported TTFT - server TTFT (ms); "
        "decode error = reported/true tok/s - 1 (%); median [min..max] over runs"
    )
    print_table(
        [
            "streams",
            "prober",
            "TTFT err p50 ms",
            "TTFT err p99 ms",
            "rep-true p50 ms",
            "rep-true p99 ms",
            "transit p99 ms",
            "decode err p50 %",
            "|decode err| p99 %",
            "preempted",
            "failed",
        ],
        rows,
    )
    mine = [k for k in kinds if k.startswith("perfgen")]
    if mine and "sdk" in kinds:
        print()
        print("perfgen / sdk, per run pair (median [min..max])")
        ratio_rows = []
        for kind in mine:
            for level in levels:
                pairs = list(zip(results[(level, kind)], results[(level, "sdk")], strict=True))

                def ratio(key: str, pairs: list[Any] = pairs) -> str:
                    return Summary(p[key] / s[key] if s[key] else math.nan for p, s in pairs).fmt(1)

                ratio_rows.append(
                    [kind, level, ratio("lag_p50"), ratio("lag_p99"), ratio("rep_p99")]
                )
        print_table(
            ["prober", "streams", "TTFT err p50 ratio", "TTFT err p99 ratio", "rep-true p99 ratio"],
            ratio_rows,
        )
    print()
    print_table(
        ["streams", "simulator CPU share during runs (1.0 = one core)"],
        [[level, Summary(sim_share[level]).fmt(1)] for level in levels],
    )
    print(
        "preempted = involuntary context switches of the prober process during a run: "
        "another process took its CPU (the machine is shared)"
    )
    print(f"# wall {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
