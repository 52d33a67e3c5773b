"""Cost: CPU time of the prober process per streamed chunk, and the one-core ceiling.

Part 1 (cost): each prober (perfgen's engine, the openai SDK loop, a bare aiohttp reader
with json.loads) runs in its own process pinned to CPU 0, the simulator on the last CPU.
The prober process's CPU time (`time.process_time()`: user + system, everything in the
process: event loop, GC, request set-up, result building) over a burst of --streams
concurrent streams of 50 tokens/s is divided by the token chunks received. Two stream
lengths (--long and --short tokens, the same number of requests) split it into a per-chunk
slope and a per-request intercept: cpu = requests * per_request + chunks * per_chunk.

Part 2 (ceiling): perfgen alone, sustained load: N streams kept open (each 50 tok/s, new
stream as soon as one ends, starts spread over a stream's length), N stepped up until the
p99 TTFT error (client first token seen - server first_token_sent) passes 1 ms. Reports the
aggregate chunk rate, the prober's and the simulator's CPU share at each step.

    python bench/cpu_per_chunk.py                  # both parts, about 2.5 minutes
    python bench/cpu_per_chunk.py --part cost      # or --part ceiling
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

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
)

US = 1e6


def cost(sim: Simulator, kinds: list[str], args: argparse.Namespace, cpu: int | None) -> None:
    workers: dict[str, Worker] = {}
    per_chunk: dict[str, list[float]] = {k: [] for k in kinds}
    slope: dict[str, list[float]] = {k: [] for k in kinds}
    intercept: dict[str, list[float]] = {k: [] for k in kinds}
    share: dict[str, list[float]] = {k: [] for k in kinds}
    sim_share: list[float] = []
    try:
        for kind in kinds:
            workers[kind] = Worker(kind, sim.url, cpu=cpu, extra=["--loop", args.loop])
        for worker in workers.values():
            worker.run(mode="burst", concurrency=args.streams, max_tokens=4)
        for rep in range(args.runs):
            order = kinds if rep % 2 == 0 else kinds[::-1]
            for kind in order:
                measured = {}
                for tokens in (args.long, args.short):
                    with CpuMeter(sim) as meter:
                        answer = workers[kind].run(
                            mode="burst", concurrency=args.streams, max_tokens=tokens
                        )
                    ok = [s for s in answer["streams"] if s.get("ok")]
                    chunks = sum(s["tokens"] or 0 for s in ok)
                    measured[tokens] = (answer["cpu"], chunks, len(ok), answer["wall"])
                    if tokens == args.long:
                        sim_share.append(meter.share)
                cpu_l, chunks_l, req_l, wall_l = measured[args.long]
                cpu_s, chunks_s, req_s, _ = measured[args.short]
                per_chunk[kind].append(cpu_l / chunks_l)
                share[kind].append(cpu_l / wall_l)
                b = (cpu_l - cpu_s) / (chunks_l - chunks_s)
                slope[kind].append(b)
                intercept[kind].append((cpu_s - b * chunks_s) / req_s)
    finally:
        for worker in workers.values():
            worker.stop()

    print()
    print(
        f"CPU of the prober process: {args.streams} concurrent streams x {args.long} tokens "
        f"at 50 tok/s ({args.streams * 50} chunks/s); median [min..max] over {args.runs} runs"
    )
    rows = []
    for kind in kinds:
        rows.append(
            [
                kind,
                Summary(per_chunk[kind]).fmt(US, 1),
                Summary(slope[kind]).fmt(US, 1),
                Summary(intercept[kind]).fmt(US, 0),
                Summary(share[kind]).fmt(1, 2),
            ]
        )
    print_table(
        ["prober", "all-in µs/chunk", "marginal µs/chunk", "µs/request", "prober CPU share"], rows
    )
    if "perfgen" in kinds:
        ratio_rows = []
        for other in kinds:
            if other.startswith("perfgen"):
                continue
            ratio_rows.append(
                [
                    f"perfgen / {other}",
                    Summary(
                        p / o for p, o in zip(per_chunk["perfgen"], per_chunk[other], strict=True)
                    ).fmt(1),
                    Summary(p / o for p, o in zip(slope["perfgen"], slope[other], strict=True)).fmt(
                        1
                    ),
                ]
            )
        print()
        print_table(["ratio (same run)", "all-in per chunk", "marginal per chunk"], ratio_rows)
    print(f"simulator CPU share during the long runs: {Summary(sim_share).fmt(1)}")


def sample_stream(tokens: int = 100) -> list[bytes]:
    """The simulator's own bytes for one OpenAI stream, one read per SSE event."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from perfgen.simulator.openai_wire import OpenAIStream
    from perfgen.simulator.plan import RequestPlan
    from perfgen.simulator.wire import ChatRequest

    request = ChatRequest(
        model="m",
        stream=True,
        max_tokens=tokens,
        wants_usage=True,
        prompt_tokens=12,
        reply_with=None,
    )
    plan = RequestPlan(
        ttft_seconds=0.1,
        tokens_per_second=50.0,
        fault=None,
        reasoning_tokens=0,
        answer_tokens=tokens,
        truncated=False,
        tokens_per_chunk=1,
        include_usage=True,
        retry_after_seconds=0,
    )
    encoder = OpenAIStream(1, request, plan)
    return [
        encoder.preamble(),
        *(encoder.answer([" word"]) for _ in range(tokens)),
        encoder.finish(),
    ]


def parse_only(runs: int) -> None:
    """In-process, no I/O: the decode cost per chunk of each prober's parsing path."""
    import json

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

    from perfgen.exporter.protocols import get_protocol
    from perfgen.exporter.sse import SSEDecoder

    chunks = sample_stream()
    tokens = len(chunks) - 2

    def perfgen() -> None:
        decoder, facts = SSEDecoder(), get_protocol("openai").new_stream()
        for chunk in chunks:
            for event in decoder.feed(chunk):
                facts.feed(event)
        for event in decoder.flush():
            facts.feed(event)

    def bare() -> None:
        loads = json.loads
        for chunk in chunks:
            for line in chunk.split(b"\n"):
                if line.startswith(b"data: ") and line != b"data: [DONE]":
                    loads(line[6:])

    probes = {"perfgen (SSEDecoder + OpenAIStream)": perfgen, "bare (split + json.loads)": bare}
    try:
        from openai._models import construct_type
        from openai._streaming import SSEDecoder as SdkDecoder
        from openai.types.chat import ChatCompletionChunk

        def sdk() -> None:
            for sse in SdkDecoder().iter_bytes(iter(chunks)):
                if sse.data != "[DONE]":
                    construct_type(value=sse.json(), type_=ChatCompletionChunk)

        probes["sdk (SSEDecoder + ChatCompletionChunk)"] = sdk
    except ImportError:  # SDK internals moved: leave the SDK row out
        pass
    rows = []
    for name, fn in probes.items():
        per_run = []
        for _ in range(runs):
            t0 = time.process_time()
            for _ in range(50):
                fn()
            per_run.append((time.process_time() - t0) / (50 * tokens))
        rows.append([name, Summary(per_run).fmt(US, 2)])
    print()
    print(
        f"parse only, in-process, no I/O: one {tokens}-token stream as the simulator sends it, "
        f"one read per event; median [min..max] over {runs} runs"
    )
    print_table(["parsing path", "µs/chunk"], rows)


def ceiling(sim: Simulator, args: argparse.Namespace, cpu: int | None) -> None:
    stream_seconds = args.ttft_ms / 1000 + args.ceiling_tokens / 50.0
    rows = []
    best: float | None = None
    with Worker(args.ceiling_prober, sim.url, cpu=cpu) as worker:
        if args.rt:
            # Diagnostic: SCHED_FIFO for the prober and the simulator, so that other tenants
            # of a shared machine cannot preempt them (root only; both mostly sleep).
            for pid in (worker.pid, sim.pid):
                subprocess.run(["chrt", "-f", "-p", "10", str(pid)], check=True)
        worker.run(mode="burst", concurrency=min(args.steps[0], 200), max_tokens=4)
        for streams in args.steps:
            p99s: list[float] = []
            rates: list[float] = []
            shares: list[float] = []
            sim_shares: list[float] = []
            preempted: list[float] = []
            failed = 0
            for _ in range(args.ceiling_runs):
                with CpuMeter(sim) as meter:
                    answer = worker.run(
                        mode="sustained",
                        streams=streams,
                        seconds=args.ceiling_seconds,
                        max_tokens=args.ceiling_tokens,
                        stream_seconds=stream_seconds,
                    )
                truth = sim.records(limit=10_000)
                pairs = match_truth(answer["streams"], truth)
                failed += len(answer["streams"]) - len(pairs)
                start = min(s["t0"] for s, _ in pairs) if pairs else 0.0
                # Only streams started once every lane is running: the sustained state.
                steady = [
                    s["first"] - r["first_token_sent"]
                    for s, r in pairs
                    if s["t0"] - start >= stream_seconds
                ]
                p99s.append(percentile(steady, 99))
                rates.append(sum(s["tokens"] or 0 for s, _ in pairs) / answer["wall"])
                shares.append(answer["cpu"] / answer["wall"])
                sim_shares.append(meter.share)
                preempted.append(answer.get("preempted", 0))
            p99 = Summary(p99s)
            per_chunk = Summary(sh / r for sh, r in zip(shares, rates, strict=True) if r)
            rows.append(
                [
                    streams,
                    Summary(rates).fmt(1, 0),
                    p99.fmt(1000),
                    per_chunk.fmt(US, 1),
                    Summary(shares).fmt(1),
                    Summary(sim_shares).fmt(1),
                    Summary(preempted).fmt(1, 0),
                    failed,
                ]
            )
            if p99.median <= 0.001:
                best = Summary(rates).median
            else:
                break
            if time.monotonic() - args.started > args.budget_seconds:
                print("# time budget reached: stopping the ramp", file=sys.stderr)
                break
            if Summary(sim_shares).median > 0.9:
                print("# simulator near one core: stopping the ramp", file=sys.stderr)
                break
    print()
    print(
        f"{args.ceiling_prober} under sustained load (streams of {args.ceiling_tokens} tokens "
        f"at 50 tok/s, {args.ceiling_seconds:g} s per run, {args.ceiling_runs} runs per step), "
        f"prober on one core, {'SCHED_FIFO' if args.rt else 'normal priority'}"
    )
    print_table(
        [
            "streams",
            "chunks/s",
            "TTFT err p99 ms",
            "µs CPU/chunk",
            "prober CPU share",
            "simulator CPU share",
            "preempted",
            "failed",
        ],
        rows,
    )
    print(
        "preempted = involuntary context switches of the prober per run (CPU taken by "
        "another process: the machine is shared)"
    )
    print(
        f"highest sustained aggregate rate with TTFT err p99 <= 1 ms: "
        f"{'none of the steps' if best is None else f'{best:.0f} chunks/s'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--part", choices=["parse", "cost", "ceiling", "all"], default="all")
    parser.add_argument("--probers", default="perfgen,perfgen_shared,perfgen_exporter,sdk,bare,raw")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--long", type=int, default=100, help="tokens per stream (long runs)")
    parser.add_argument("--short", type=int, default=4, help="tokens per stream (short runs)")
    parser.add_argument("--ttft-ms", type=float, default=50.0)
    parser.add_argument("--steps", default="25,50,100,200,400,800,1200")
    parser.add_argument("--ceiling-tokens", type=int, default=50)
    parser.add_argument("--ceiling-seconds", type=float, default=3.0)
    parser.add_argument("--ceiling-runs", type=int, default=5)
    parser.add_argument(
        "--ceiling-prober",
        default="perfgen",
        help="prober of the ceiling part (perfgen, perfgen_shared, perfgen_exporter, bare, raw)",
    )
    parser.add_argument(
        "--rt",
        action="store_true",
        help="ceiling diagnostic: run prober and simulator SCHED_FIFO (root), "
        "so that other processes on a shared machine cannot preempt them",
    )
    parser.add_argument(
        "--budget-seconds",
        type=float,
        default=150.0,
        help="no further ceiling step starts after this much time",
    )
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument(
        "--loop",
        choices=["asyncio", "uvloop"],
        default="asyncio",
        help="event loop of the cost part's probers (uvloop: an experiment, "
        "`pip install uvloop` first)",
    )
    args = parser.parse_args()
    args.steps = [int(x) for x in args.steps.split(",")]
    args.started = time.monotonic()
    ncpu = os.cpu_count() or 1
    pin = not args.no_pin and ncpu >= 2
    print_machine()
    print(
        f"# cpu_per_chunk: pinned={pin} (simulator cpu {ncpu - 1 if pin else '-'}, "
        f"prober cpu {0 if pin else '-'}), cost part event loop: {args.loop}"
    )
    config = simulator_toml(
        [
            {
                "name": "m",
                "ttft_ms": args.ttft_ms,
                "tokens_per_second": 50,
                "output_tokens": max(args.long, args.ceiling_tokens),
            }
        ]
    )
    started = time.monotonic()
    if args.part in ("parse", "all"):
        parse_only(args.runs)
    if args.part == "parse":
        return
    with Simulator(config, cpus=str(ncpu - 1) if pin else None) as sim:
        if args.part in ("cost", "all"):
            cost(sim, args.probers.split(","), args, 0 if pin else None)
        if args.part in ("ceiling", "all"):
            ceiling(sim, args, 0 if pin else None)
    print(f"# wall {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
