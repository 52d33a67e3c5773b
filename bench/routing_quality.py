"""Routing quality per probe token: perfgen against the peers' rules on scripted worlds.

Every world (bench/routing_worlds.py) scripts three models' true TTFT distribution,
decode rate and error rate over a day. For each world and seed:

1. the exporter's own cost control (`exporter.scheduler.Scheduler` on a simulated clock,
   Prometheus scraping every 60 s) decides when a probe is paid for; each paid probe's
   result is drawn from the world's truth at that moment and fed to the exporter's own
   `CumulativeStore`; every scrape's series are written as OpenMetrics. Once with fixed
   intervals (`fixed`: the config's test_interval_minutes, or 15 min when the config
   probes adaptively, as the example does) and once with adaptive probing (`adaptive`,
   exporter/adaptive.py, up to the config's test_interval_minutes), both starting at the
   same minute of the first hour, drawn per world and seed, so that events begin at any
   phase between two probes (`start_offset`);
2. `promtool tsdb create-blocks-from openmetrics` backfills them into a temporary TSDB, and
   `promtool tsdb create-blocks-from rules` evaluates the recording rules that `perfgen
   rules render` makes of the configuration (one pass per dependency level, as promtool
   requires), against a real Prometheus on 127.0.0.1 that then serves everything;
3. every `--decide-every` seconds the generator's own code (`snapshot.fetch_snapshot` at
   that past time, `snapshot.model_stats`, `ranking.decide` with the configured
   hysteresis) decides the chain, starting from the chain it decided last;
4. the peers' rules (bench/routing_peers.py) decide at the same times from the same
   probe results: the `fixed` ones (columns named after the rule) and the `adaptive`
   ones (`RULE@adaptive`), so that each of perfgen's datasets has the peers on its own
   probes beside it; they read the last PEER_WINDOW of results (`--peer-window`),
   whatever perfgen's window.

Per world x policy: regret (time-averaged % by which the chain in use is truly slower
than the best chain), detection delay (the incumbent degraded -> primary moved) and
recovery delay (it is best again -> primary back), primary changes per hour, and spend
(paid probes and output tokens per model per hour). Figures are the median [min..max]
over seeds; the summary lines average the per-world means over worlds. Because every
policy on one probe set sees the same draws, perfgen minus each peer is also shown seed
by seed (seeds lower / equal / higher): what a gap smaller than the spread over seeds is.

    python bench/routing_quality.py --quick     # 4 worlds, 2 seeds, decisions every 5 min
    python bench/routing_quality.py             # 8 worlds, 3 seeds, decisions every 2 min
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import math
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import yaml  # noqa: E402
from common import Summary, print_machine, print_table  # noqa: E402
from routing_peers import PeerRule, litellm_mean10, p50_window, proxy_score  # noqa: E402
from routing_worlds import (  # noqa: E402
    DAY_SECONDS,
    QUICK_WORLDS,
    REFERENCE_TOKENS,
    WORLDS,
    World,
    draw_probe,
    events,
    regret,
)

from perfgen.config import (  # noqa: E402
    LATENCY_MEAN,
    LATENCY_STATISTICS,
    Performance,
    Route,
    duration_seconds,
    load_config,
)
from perfgen.exporter.adaptive import AdaptiveIntervals  # noqa: E402
from perfgen.exporter.metrics import CumulativeStore  # noqa: E402
from perfgen.exporter.result import ProbeResult  # noqa: E402
from perfgen.exporter.scheduler import CostSettings, Scheduler  # noqa: E402
from perfgen.exporter.spend import probe_output_tokens  # noqa: E402
from perfgen.generator.promql import PromClient  # noqa: E402
from perfgen.generator.query_cli import stale_after  # noqa: E402
from perfgen.generator.ranking import ModelStats, decide, policy_for  # noqa: E402
from perfgen.generator.snapshot import fetch_snapshot, model_stats  # noqa: E402
from perfgen.rules.render import render_rules  # noqa: E402
from perfgen.stack.processes import ManagedProcess, find_binary, start_prometheus  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SCRAPE_SECONDS = 60  # Prometheus scrapes /probe every minute; the rules run every minute
WARMUP_SECONDS = 2 * 3600  # every policy's window fills before anything is counted
# Answer sizes the same decisions are also judged at: a short chat reply, the reference,
# a long answer. The shorter the answer, the more the first token weighs in what users wait.
ANSWER_SIZES = (20, REFERENCE_TOKENS, 500)
SCENARIO = "default"
# The series the rules and the generator read; the rest of a /probe answer is not needed.
WANTED = re.compile(
    r"^(llm_ttft_seconds_(bucket|sum|count|squared_total)"
    r"|llm_decode_tokens_per_second_(sum|count|squared_total)|llm_requests_total"
    r"|llm_request_failures_total)$"
)
PERFGEN, ADAPTIVE = "perfgen", "perfgen-adaptive"
# The fixed-interval baseline when the configuration probes adaptively: the example's
# test_interval_minutes through round 8, what its adaptive default is measured against.
FIXED_BASELINE_MINUTES = 15.0
PEERS = ("proxy-score", "litellm-mean10", "p50-window")
# The window the peers' rules read unless --peer-window says otherwise: 30m, where the
# proxy spec's score measured best (at 20m it averages 2.2-2.3 %, round 10), and the
# example config's window through round 10, so every round's peer figures compare.
PEER_WINDOW = "30m"
ON_ADAPTIVE = "@adaptive"  # a peer's label suffix when it decides from the adaptive probes


@dataclass
class Run:
    """One world x seed x probing schedule, as one exporter would have probed it."""

    world: World
    seed: int
    dataset: str  # "fixed" or "adaptive"
    results: dict[str, list[ProbeResult]] = field(default_factory=dict)  # model -> results
    # Adaptive runs: the reason of the interval chosen right after each paid probe.
    reasons: Counter[str] = field(default_factory=Counter)

    @property
    def provider(self) -> str:
        # The provider label keeps runs apart in one TSDB: rules aggregate by provider, model.
        return f"{self.world.name}.s{self.seed}.{self.dataset}"


class SimClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# --------------------------------------------------------------------------- probing


def _series_lines(
    store: CumulativeStore, key: tuple[str, str, str], reasons: set[str]
) -> list[str]:
    out: list[str] = []
    for family in store.families(*key):
        for sample in family.samples:
            if not WANTED.match(sample.name):
                continue
            labels = dict(sample.labels)
            if "reason" in labels and labels["reason"] not in reasons:
                continue
            text = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
            out.append(f'{sample.name}{{job="llm_probe",instance="bench",{text}}} {sample.value:g}')
    return out


def start_offset(run: Run) -> int:
    """When this run's exporter starts, in seconds into the day: a whole scrape within the
    first hour, drawn per world and seed (the same for fixed and adaptive probing).

    An exporter started at midnight probes at every quarter hour, and every event of the
    worlds starts on a whole hour: each degradation would begin the moment a probe is
    taken, the luckiest phase there is, which flatters fixed intervals' detection (rounds
    1-7 had it). A real provider degrades at any time between two probes.
    """
    scrapes = 3600 // SCRAPE_SECONDS
    return random.Random(f"{run.world.name}/{run.seed}/start").randrange(scrapes) * SCRAPE_SECONDS


def probe_draws(run: Run, key: tuple[str, str, str], step: int) -> random.Random:
    """The random draws of the probe of `key` at `step` of the day: the same for every
    dataset and policy that pays for that probe (common random numbers).

    One stream per run shifted every later draw whenever a schedule changed, so two
    variants of the exporter differed by the luck of their whole day, not only by what
    they did: a difference in regret smaller than the spread over seeds could not be
    told from noise. Now a probe of a target at a given minute answers the same whoever
    asks, and a paired comparison sees only what its variants changed.
    """
    return random.Random(f"{run.world.name}/{run.seed}/{key[1]}/{key[2]}/{step}")


async def simulate(run: Run, performance: Performance, day_start: int, out: IO[str]) -> None:
    """Drive the exporter's scheduler through the day; write every scrape as OpenMetrics."""
    clock = SimClock()
    intervals = AdaptiveIntervals(performance, clock) if run.dataset == "adaptive" else None
    scheduler = Scheduler(
        CostSettings.from_performance(performance), clock=clock, intervals=intervals
    )
    store = CumulativeStore()
    world = run.world
    keys = [(run.provider, m, mod) for m in world.models for mod in performance.sd_modules]
    reasons = set(world.fail_reasons)
    lines = {key: _series_lines(store, key, reasons) for key in keys}
    stamps: dict[tuple[str, str, str], float] = {}
    for model in world.models:
        run.results[model] = []
    for step in range(start_offset(run), DAY_SECONDS, SCRAPE_SECONDS):
        at = float(day_start + step)
        clock.now = at
        for key in keys:
            module = performance.modules[key[2]]
            truth = world.truth(key[1], float(step))

            async def start(
                timeout: float,
                key: Any = key,
                truth: Any = truth,
                module: Any = module,
                step: int = step,
            ) -> ProbeResult:
                return draw_probe(
                    truth,
                    probe_draws(run, key, step),
                    provider=key[0],
                    model=key[1],
                    module=key[2],
                    max_tokens=module.max_tokens,
                    started_at=clock.now,
                    runs=module.runs,
                )

            answer = await scheduler.probe(
                key,
                start,
                timeout=module.timeout_seconds,
                cost=probe_output_tokens(module),
            )
            if answer.outcome == "fresh" and answer.result is not None:
                store.observe(answer.result)
                run.results[key[1]].append(answer.result)
                lines[key] = _series_lines(store, key, reasons)
                stamps[key] = answer.result.started_at
                if intervals is not None:
                    run.reasons[scheduler.interval(key).reason] += 1
            stamp = f" {int(at)}\n"
            out.write(stamp.join(lines[key]) + stamp)
            if key in stamps:
                out.write(
                    f'llm_probe_timestamp_seconds{{job="llm_probe",instance="bench",'
                    f'model="{key[1]}",module="{key[2]}",provider="{key[0]}"}} '
                    f"{stamps[key]:.0f} {int(at)}\n"
                )


# --------------------------------------------------------------------------- the TSDB


def rule_levels(recording_yaml: str) -> list[str]:
    """The recording rules split by dependency level: promtool's rules backfill cannot let a
    rule read another rule's output of the same run."""
    doc = yaml.safe_load(recording_yaml)
    rules = [rule for group in doc["groups"] for rule in group["rules"] if "record" in rule]
    names = {rule["record"] for rule in rules}
    level: dict[int, int] = {}
    for i, rule in enumerate(rules):
        deps = [
            j
            for j, other in enumerate(rules[:i])
            if other["record"] in names
            and re.search(rf"\b{re.escape(other['record'])}\b", rule["expr"])
        ]
        level[i] = 1 + max((level[j] for j in deps), default=0)
    out = []
    for n in range(1, max(level.values()) + 1):
        group = [rule for i, rule in enumerate(rules) if level[i] == n]
        out.append(yaml.safe_dump({"groups": [{"name": f"level-{n}", "rules": group}]}))
    return out


def build_tsdb(root: Path, om: Path, recording_yaml: str, start: int, end: int) -> ManagedProcess:
    """Backfill the raw series and every rule level; return Prometheus serving them."""
    promtool = find_binary("promtool")
    workdir = root / "prometheus"
    data = workdir / "prometheus-data"
    data.mkdir(parents=True)
    config = "global:\n  evaluation_interval: 1m\n"
    subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(om), str(data)],
        check=True,
        capture_output=True,
        timeout=1800,
    )
    for n, level in enumerate(rule_levels(recording_yaml), 1):
        rules = root / f"level-{n}.yml"
        rules.write_text(level)
        blocks = root / f"blocks-{n}"
        prometheus = start_prometheus(workdir, config, retention="3650d")
        try:
            subprocess.run(
                [
                    promtool,
                    "tsdb",
                    "create-blocks-from",
                    "rules",
                    f"--start={start}",
                    f"--end={end}",
                    f"--url={prometheus.url}",
                    f"--eval-interval={SCRAPE_SECONDS}s",
                    f"--output-dir={blocks}",
                    # Relative, from cwd=root: Prometheus offsets a group's evaluations
                    # within the interval by a hash of the group's name and file, so a file
                    # in a random temp dir moved every evaluation by up to a minute between
                    # runs, and increase()'s extrapolation with it: two runs of the same
                    # code and seeds differed by up to 1 pp of regret in a world.
                    rules.name,
                ],
                cwd=root,
                check=True,
                capture_output=True,
                timeout=1800,
            )
        finally:
            prometheus.stop()
        for block in blocks.iterdir():
            if block.is_dir():
                shutil.move(str(block), data / block.name)
    return start_prometheus(workdir, config, retention="3650d")


# --------------------------------------------------------------------------- deciding


Timeline = list[tuple[float, list[str]]]  # (seconds into the day, chain from then on)


def decide_day(
    url: str,
    runs: Sequence[Run],
    schedules: dict[str, Performance],
    day_start: int,
    every: int,
    trace: str | None,
    peer_window: float,
) -> dict[tuple[str, int, str], Timeline]:
    """Every policy's chain at every decision time, per (world, seed, policy).

    `schedules` holds each dataset's configuration ("fixed", "adaptive"): they differ only
    in how often they probe, and so in the generator's stale_after, which is why each
    distinct stale_after gets its own snapshot. The peers read the results of the last
    `peer_window` seconds, whatever perfgen's window.
    """
    client = PromClient(url, timeout=60)
    performance = schedules["fixed"]
    stale = {dataset: stale_after(own) for dataset, own in schedules.items()}
    hold = duration_seconds(performance.generator.hysteresis_for)
    policy = policy_for(performance, SCENARIO)  # what `perfgen generate` builds
    peers: dict[str, PeerRule] = {
        "proxy-score": proxy_score(performance, peer_window),
        "litellm-mean10": litellm_mean10,
        "p50-window": p50_window(performance, peer_window),
    }
    chains: dict[tuple[str, int, str], list[str]] = {}
    timelines: dict[tuple[str, int, str], Timeline] = {}
    for run in runs:
        for label in (PERFGEN if run.dataset == "fixed" else ADAPTIVE, *peer_labels(run.dataset)):
            chains[(run.world.name, run.seed, label)] = list(run.world.models)
            timelines[(run.world.name, run.seed, label)] = []
    for step in range(every, DAY_SECONDS, every):
        snaps = {
            after: fetch_snapshot(
                client,
                performance.window,
                hold_seconds=hold,
                stale_after=after,
                stale_after_seconds=duration_seconds(after),
                at=float(day_start + step),
                noise=performance.generator.switch_confidence > 0,
            )
            for after in set(stale.values())
        }
        for run in runs:
            snap = snaps[stale[run.dataset]]
            key_base = (run.world.name, run.seed)
            label = ADAPTIVE if run.dataset == "adaptive" else PERFGEN
            old = chains[(*key_base, label)]
            routes = [Route(run.provider, m) for m in run.world.models]
            stats = {r: model_stats(snap, SCENARIO, r) for r in routes}
            decision = decide(
                SCENARIO,
                [Route(run.provider, m) for m in old],
                routes,
                stats,
                {run.provider: run.world.models},
                policy,
            )
            if not decision.untouched:
                chains[(*key_base, label)] = [r.model for r in decision.new_chain]
            names = {f"{run.world.name}/{run.seed}"} | (
                {run.world.name} if run.seed == 0 else set()
            )
            if trace in names:
                _trace_line(step, label, stats, chains[(*key_base, label)])
            timelines[(*key_base, label)].append((float(step), chains[(*key_base, label)]))
            at = float(day_start + step)
            for name, peer_label in zip(PEERS, peer_labels(run.dataset), strict=True):
                chain = peers[name](run.results, at, chains[(*key_base, peer_label)])
                chains[(*key_base, peer_label)] = chain
                timelines[(*key_base, peer_label)].append((float(step), chain))
    return timelines


def peer_labels(dataset: str) -> list[str]:
    """The peers' policy labels on one dataset's probe results."""
    return [name if dataset == "fixed" else name + ON_ADAPTIVE for name in PEERS]


def _trace_line(step: int, label: str, stats: dict[Route, ModelStats], chain: list[str]) -> None:
    """One decision of one policy (`--trace WORLD[/SEED]`): time, chain, each score."""
    figures = []
    for route, stat in stats.items():
        score = "-" if stat.score is None else f"{stat.score:.3f}"
        low = "-" if stat.hold_min is None else f"{stat.hold_min:.3f}"
        high = "-" if stat.hold_max is None else f"{stat.hold_max:.3f}"
        noise = ""
        if stat.ttft_mean_stderr is not None or stat.decode_stderr is not None:
            noise = f" ±{stat.ttft_mean_stderr or 0:.2f} s ±{stat.decode_stderr or 0:.1f} tok/s"
        figures.append(
            f"{route.model}={score}[{low}..{high}] p95={stat.ttft_p95_seconds or 0:.2f}"
            f" mean={stat.ttft_mean_seconds or 0:.2f}"
            f" dec={stat.decode_tokens_per_second or 0:.0f} ok={stat.success_ratio or 0:.3f}"
            f" n={stat.samples or 0:g}{noise}"
            f"{'' if stat.fresh else ' STALE ' + stat.stale_reason}"
        )
    hours, rest = divmod(step, 3600)
    print(f"# trace {label} {hours:02d}:{rest // 60:02d} {','.join(chain)}  {'  '.join(figures)}")


# --------------------------------------------------------------------------- measuring


@dataclass
class Figures:
    regret: float  # fraction
    detect: list[float]  # seconds, one per event
    recover: list[float]
    flaps_per_hour: float
    probes_per_model_hour: float
    tokens_per_model_hour: float
    # Regret of the same decisions for users whose answers are this many tokens long.
    regret_by_answer: dict[int, float] = dataclasses.field(default_factory=dict)


def chain_at(timeline: Timeline, t: float, initial: list[str]) -> list[str]:
    chain = initial
    for start, c in timeline:
        if start > t:
            break
        chain = c
    return chain


def measure(
    world: World, timeline: Timeline, run: Run, max_chain: int, tokens: int = REFERENCE_TOKENS
) -> Figures:
    initial = list(world.models)
    measured = [(t, c) for t, c in timeline if t >= WARMUP_SECONDS]
    chains = [
        (float(t), chain_at(timeline, float(t), initial))
        for t in range(WARMUP_SECONDS, DAY_SECONDS, SCRAPE_SECONDS)
    ]
    # Time-averaged regret of these decisions for answers of each size (the chain in use
    # at each minute is looked up once).
    by_answer = {
        size: statistics.fmean(regret(world, chain, t, max_chain, size) for t, chain in chains)
        for size in dict.fromkeys((tokens, *ANSWER_SIZES))
    }
    flaps = sum(1 for (_, a), (_, b) in zip(measured, measured[1:], strict=False) if a[0] != b[0])
    hours = (DAY_SECONDS - WARMUP_SECONDS) / 3600
    detect, recover = [], []
    for event in events(world, tokens=tokens):
        if event.start < WARMUP_SECONDS:
            continue
        end = event.end if event.end is not None else DAY_SECONDS
        if chain_at(timeline, event.start, initial)[0] != world.incumbent:
            detect.append(0.0)
        else:
            moved = next(
                (t for t, c in timeline if event.start <= t < end and c[0] != world.incumbent), end
            )
            detect.append(moved - event.start)
        if event.end is not None:
            back = next(
                (t for t, c in timeline if t >= event.end and c[0] == world.incumbent),
                float(DAY_SECONDS),
            )
            if chain_at(timeline, event.end, initial)[0] == world.incumbent:
                back = event.end
            recover.append(back - event.end)
    probes = sum(len(r) for r in run.results.values())
    probe_tokens = sum(sum(q.output_tokens or 0 for q in r) for r in run.results.values())
    # Spend counts failed requests' tokens too (none here: a failure delivers nothing).
    model_hours = len(world.models) * DAY_SECONDS / 3600
    return Figures(
        by_answer[tokens],
        detect,
        recover,
        flaps / hours,
        probes / model_hours,
        probe_tokens / model_hours,
        by_answer,
    )


# --------------------------------------------------------------------------- output


def _fmt(values: Sequence[float], scale: float = 1.0, digits: int = 1) -> str:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0] * scale:.{digits}f}"
    return Summary(values).fmt(scale, digits)


def answer_regret(
    figures: dict[tuple[str, str], list[Figures]], worlds: Sequence[str], policy: str, size: int
) -> float:
    return statistics.fmean(
        statistics.fmean(f.regret_by_answer[size] for f in figures[(w, policy)]) for w in worlds
    )


def print_overall_regret(
    figures: dict[tuple[str, str], list[Figures]], worlds: Sequence[str], policies: Sequence[str]
) -> None:
    """The regret averaged over the worlds, to two decimals, with its spread over seeds
    (seed i of every world), and in how many worlds each policy is below each other one:
    what the summary lines' one decimal cannot tell apart."""
    print("\n### regret % averaged over the worlds (per seed: median [min..max])\n")
    seeds = min(len(figures[(w, p)]) for w in worlds for p in policies)
    per_world = {
        (w, p): statistics.fmean(f.regret for f in figures[(w, p)])
        for w in worlds
        for p in policies
    }
    rows = []
    for policy in policies:
        per_seed = [
            statistics.fmean(figures[(w, policy)][i].regret for w in worlds) for i in range(seeds)
        ]
        mean = statistics.fmean(per_world[(w, policy)] for w in worlds)
        rows.append([policy, f"{100 * mean:.2f}", _fmt(per_seed, 100.0, 2)])
    print_table(["policy", "mean", "per seed"], rows)
    print(
        f"\n### worlds (of {len(worlds)}) in which the row's regret is below the column's "
        "(mean over seeds)\n"
    )
    print_table(
        ["policy", *policies],
        [
            [
                row,
                *(
                    "-"
                    if row == col
                    else str(sum(per_world[(w, row)] < per_world[(w, col)] for w in worlds))
                    for col in policies
                ),
            ]
            for row in policies
        ],
    )


def print_paired_regret(
    figures: dict[tuple[str, str], list[Figures]], worlds: Sequence[str], policies: Sequence[str]
) -> None:
    """perfgen against each peer on the same probes, seed by seed. Seed i of both decided
    from one set of probe results (common random numbers), so the difference of the pair
    is what the rule changes; how many seeds it is lower in says whether a gap of a tenth
    of a point is the rule or the draw (with 6 seeds, lower in all 6 happens by chance
    once in 32 when the rules route alike)."""
    pairs = [
        (mine, peer)
        for mine, dataset in ((PERFGEN, "fixed"), (ADAPTIVE, "adaptive"))
        for peer in peer_labels(dataset)
        if mine in policies and peer in policies
    ]
    if not pairs:
        return
    print(
        "\n### regret, perfgen minus each peer on the same probes, seed by seed: seeds "
        "lower / equal / higher, and the difference in points (median [min..max])\n"
    )
    rows = []
    for world in worlds:
        row = [world]
        for mine, peer in pairs:
            diffs = [
                a.regret - b.regret
                for a, b in zip(figures[(world, mine)], figures[(world, peer)], strict=True)
            ]
            lower = sum(d < 0 for d in diffs)
            equal = sum(d == 0 for d in diffs)
            row.append(f"{lower}/{equal}/{len(diffs) - lower - equal}, {_fmt(diffs, 100.0, 2)}")
        rows.append(row)
    print_table(["world", *(f"{mine} - {peer}" for mine, peer in pairs)], rows)


def report(
    figures: dict[tuple[str, str], list[Figures]], worlds: Sequence[str], policies: Sequence[str]
) -> None:
    metrics: list[tuple[str, Any, float, int]] = [
        ("regret %", lambda f: [f.regret], 100.0, 1),
        ("detection delay s", lambda f: f.detect, 1.0, 0),
        ("recovery delay s", lambda f: f.recover, 1.0, 0),
        ("primary changes / h", lambda f: [f.flaps_per_hour], 1.0, 2),
        ("paid probes / model / h", lambda f: [f.probes_per_model_hour], 1.0, 1),
        ("output tokens / model / h", lambda f: [f.tokens_per_model_hour], 1.0, 0),
    ]
    for title, pick, scale, digits in metrics:
        print(f"\n### {title} (median [min..max] over seeds)\n")
        rows = []
        for world in worlds:
            row = [world]
            for policy in policies:
                per_seed = [
                    statistics.fmean(pick(f)) if pick(f) else math.nan
                    for f in figures[(world, policy)]
                ]
                row.append(_fmt(per_seed, scale, digits))
            rows.append(row)
        print_table(["world", *policies], rows)
    print("\n### regret % by the users' answer size (mean over worlds of the mean over seeds)\n")
    print_table(
        ["answer tokens", *policies],
        [
            [
                str(size),
                *(f"{100 * answer_regret(figures, worlds, p, size):.1f}" for p in policies),
            ]
            for size in ANSWER_SIZES
        ],
    )
    print_overall_regret(figures, worlds, policies)
    print_paired_regret(figures, worlds, policies)
    print()
    for policy in policies:
        per_world = [figures[(w, policy)] for w in worlds]

        def mean_of(pick: Any, per_world: Any = per_world) -> float:
            values = []
            for seeds in per_world:
                seen = [x for f in seeds for x in pick(f)]
                if seen:
                    values.append(statistics.fmean(seen))
            return statistics.fmean(values) if values else math.nan

        r = mean_of(lambda f: [f.regret]) * 100
        d = mean_of(lambda f: f.detect)
        v = mean_of(lambda f: f.recover)
        fl = mean_of(lambda f: [f.flaps_per_hour])
        s = mean_of(lambda f: [f.tokens_per_model_hour])
        print(
            f"routing quality: {policy} regret {r:.1f}% detect {d:.0f} s recover {v:.0f} s "
            f"flaps {fl:.2f}/h spend {s:.0f} tokens/h"
        )


# --------------------------------------------------------------------------- main


def configured(args: argparse.Namespace) -> Performance:
    performance = load_config(args.config).performance
    generator = performance.generator
    if args.margin is not None:
        generator = dataclasses.replace(generator, hysteresis_margin=args.margin)
    if args.hold is not None:
        generator = dataclasses.replace(generator, hysteresis_for=args.hold)
    if args.switch_confidence is not None:
        generator = dataclasses.replace(generator, switch_confidence=args.switch_confidence)
    performance = dataclasses.replace(performance, generator=generator)
    if args.window is not None:
        performance = dataclasses.replace(performance, window=args.window)
    if args.interval_minutes is not None:
        performance = dataclasses.replace(performance, test_interval_minutes=args.interval_minutes)
    if args.min_test_count is not None:
        performance = dataclasses.replace(performance, min_test_count=args.min_test_count)
    if args.success_rate_confidence is not None:
        performance = dataclasses.replace(
            performance, success_rate_confidence=args.success_rate_confidence
        )
    if args.min_interval_minutes is not None:
        adaptive = dataclasses.replace(
            performance.adaptive, min_interval_minutes=args.min_interval_minutes
        )
        performance = dataclasses.replace(performance, adaptive=adaptive)
    if args.confirm_after_seconds is not None:
        adaptive = dataclasses.replace(
            performance.adaptive, confirm_after_seconds=args.confirm_after_seconds
        )
        performance = dataclasses.replace(performance, adaptive=adaptive)
    if args.latency_max_tokens is not None:
        modules = dict(performance.modules)
        modules["latency"] = dataclasses.replace(
            modules["latency"], max_tokens=args.latency_max_tokens
        )
        performance = dataclasses.replace(performance, modules=modules)
    score = performance.score
    if args.latency_reference_ms is not None:
        score = dataclasses.replace(score, latency_reference_ms=args.latency_reference_ms)
    if args.throughput_reference is not None:
        score = dataclasses.replace(
            score, throughput_reference_tokens_per_sec=args.throughput_reference
        )
    if args.failure_reference is not None:
        # The config refuses a reference past 1; an override must not measure what no
        # config can run.
        if not 0 < args.failure_reference <= 1:
            raise SystemExit(
                f"--failure-reference: must be greater than 0 and at most 1 "
                f"([performance.score] failure_ratio_reference), got {args.failure_reference:g}"
            )
        score = dataclasses.replace(score, failure_ratio_reference=args.failure_reference)
    if args.latency_statistic is not None:
        score = dataclasses.replace(score, latency_statistic=args.latency_statistic)
    if performance.generator.switch_confidence and score.latency_statistic != LATENCY_MEAN:
        raise SystemExit(
            '--switch-confidence: needs latency_statistic = "mean" (what the config refuses '
            "otherwise)"
        )
    return dataclasses.replace(performance, score=score)


def schedules_of(performance: Performance, args: argparse.Namespace) -> dict[str, Performance]:
    """The configuration each dataset probes with: fixed intervals (adaptive probing off,
    at --fixed-interval-minutes) and adaptive probing (on, up to the config's interval or
    --adaptive-interval-minutes). Both decide with the same rules, window and hysteresis;
    only the cadence, and the stale_after derived from it, differ."""
    fixed_minutes = args.fixed_interval_minutes or performance.test_interval_minutes
    if performance.adaptive.enabled and not args.fixed_interval_minutes:
        fixed_minutes = FIXED_BASELINE_MINUTES
    adaptive_minutes = args.adaptive_interval_minutes or performance.test_interval_minutes
    return {
        "fixed": dataclasses.replace(
            performance,
            test_interval_minutes=fixed_minutes,
            adaptive=dataclasses.replace(performance.adaptive, enabled=False),
        ),
        "adaptive": dataclasses.replace(
            performance,
            test_interval_minutes=adaptive_minutes,
            adaptive=dataclasses.replace(performance.adaptive, enabled=True),
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="4 worlds, 2 seeds, 5 min decisions")
    parser.add_argument("--config", default=str(REPO / "examples" / "config.example.toml"))
    parser.add_argument("--seeds", type=int, help="seeds per world (default 3, quick 2)")
    parser.add_argument("--worlds", help="comma-separated world names")
    parser.add_argument(
        "--decide-every", type=int, help="seconds between decisions (120, quick 300)"
    )
    parser.add_argument("--margin", type=float, help="override hysteresis_margin")
    parser.add_argument("--hold", help="override hysteresis_for")
    parser.add_argument(
        "--switch-confidence",
        type=float,
        help="override [performance.generator] switch_confidence (0: the margin alone)",
    )
    parser.add_argument("--window", help="override window")
    parser.add_argument(
        "--peer-window",
        default=PEER_WINDOW,
        help=f"the window the peers' rules read (default {PEER_WINDOW}, where they measured "
        "best), whatever perfgen's window (--window or the config's)",
    )
    parser.add_argument(
        "--interval-minutes",
        type=float,
        help="override test_interval_minutes: the adaptive run's maximum, and the fixed run's "
        "interval unless the config probes adaptively",
    )
    parser.add_argument("--min-test-count", type=int, help="override min_test_count")
    parser.add_argument(
        "--success-rate-confidence",
        type=float,
        help="override success_rate_confidence (0: judge the plain success ratio)",
    )
    parser.add_argument(
        "--min-interval-minutes",
        type=float,
        help="override [performance.adaptive] min_interval_minutes",
    )
    parser.add_argument(
        "--confirm-after-seconds",
        type=float,
        help="override [performance.adaptive] confirm_after_seconds (0: off)",
    )
    parser.add_argument(
        "--adaptive-interval-minutes",
        type=float,
        help="test_interval_minutes of the adaptive run only (its longest interval; default "
        "the config's): compares adaptive probing with a longer maximum against fixed "
        "intervals, at the spend each takes",
    )
    parser.add_argument(
        "--fixed-interval-minutes",
        type=float,
        help="test_interval_minutes of the fixed run, which the peers decide from too "
        f"(default: the config's, or {FIXED_BASELINE_MINUTES:g} when the config probes "
        "adaptively)",
    )
    parser.add_argument(
        "--latency-reference-ms", type=float, help="override [performance.score] latency reference"
    )
    parser.add_argument(
        "--latency-max-tokens",
        type=int,
        help="override the latency module's max_tokens (16): what the watch probes ask for; "
        "longer answers measure the decode rate with less arrival jitter, at more tokens",
    )
    parser.add_argument(
        "--throughput-reference",
        type=float,
        help="override [performance.score] throughput_reference_tokens_per_sec",
    )
    parser.add_argument(
        "--latency-statistic",
        choices=LATENCY_STATISTICS,
        help="override [performance.score] latency_statistic",
    )
    parser.add_argument(
        "--failure-reference",
        type=float,
        help="override [performance.score] failure_ratio_reference",
    )
    parser.add_argument(
        "--answer-tokens",
        type=int,
        default=REFERENCE_TOKENS,
        help=f"output tokens of the user request regret is measured on (default "
        f"{REFERENCE_TOKENS}); the probes do not change",
    )
    parser.add_argument(
        "--recording",
        type=Path,
        help="backfill these recording rules instead of rendering the config's: measures a "
        "rules edit (render it with `perfgen rules render`) without changing the repository. "
        "Overrides that change the rules (--window, the references) do not reach them, and "
        "adaptive probing still scores with the config's form",
    )
    parser.add_argument(
        "--trace", help="print every decision of this world's seed 0 (WORLD) or of WORLD/SEED"
    )
    args = parser.parse_args()
    seeds = args.seeds or (2 if args.quick else 3)
    every = args.decide_every or (300 if args.quick else 120)
    worlds = args.worlds.split(",") if args.worlds else list(QUICK_WORLDS if args.quick else WORLDS)
    performance = configured(args)
    schedules = schedules_of(performance, args)
    wall = time.monotonic()
    print_machine()
    g = performance.generator
    print(
        f"# config {args.config}: fixed {schedules['fixed'].test_interval_minutes:g} min, "
        f"adaptive {performance.adaptive.min_interval_minutes:g}-"
        f"{schedules['adaptive'].test_interval_minutes:g} min"
        f" (confirm after {performance.adaptive.confirm_after_seconds:g} s)"
        f"{' (the config probes adaptively)' if performance.adaptive.enabled else ''}, window "
        f"{performance.window} (peers {args.peer_window}), "
        f"margin {g.hysteresis_margin:g}, hold {g.hysteresis_for}, "
        f"switch_confidence {g.switch_confidence:g}, "
        f"score {performance.score.form} on the {performance.score.latency_statistic} TTFT, "
        f"references {performance.score.latency_reference_ms or 'threshold'} ms, "
        f"{performance.score.throughput_reference_tokens_per_sec or 'threshold'} tokens/s, "
        f"failure ratio {performance.score.failure_ratio_reference or 'threshold'}, "
        f"min_test_count {performance.min_test_count}, "
        f"success_rate_confidence {performance.success_rate_confidence:g}, "
        f"modules {','.join(performance.sd_modules)} "
        f"(latency {performance.modules['latency'].max_tokens} tokens); "
        f"{len(worlds)} worlds x {seeds} seeds; "
        f"decisions every {every} s; regret of {args.answer_tokens}-token answers"
        + (f"; recording rules from {args.recording}" if args.recording else "")
    )
    # A whole day in the past, so every timestamp is older than Prometheus' now.
    day_start = (int(time.time()) // 86400 - 3) * 86400
    runs = [
        Run(WORLDS[w], seed, dataset)
        for w in worlds
        for seed in range(seeds)
        for dataset in ("fixed", "adaptive")
    ]
    with tempfile.TemporaryDirectory(prefix="bench-routing-") as tmp:
        root = Path(tmp)
        om = root / "probes.om"
        t0 = time.monotonic()
        with om.open("w") as out:
            for run in runs:
                asyncio.run(simulate(run, schedules[run.dataset], day_start, out))
            out.write("# EOF\n")
        t1 = time.monotonic()
        recording = (
            args.recording.read_text()
            if args.recording
            else render_rules(performance)["recording.yml"]
        )
        prometheus = build_tsdb(root, om, recording, day_start, day_start + DAY_SECONDS)
        t2 = time.monotonic()
        try:
            assert prometheus.url
            timelines = decide_day(
                prometheus.url,
                runs,
                schedules,
                day_start,
                every,
                args.trace,
                duration_seconds(args.peer_window),
            )
        finally:
            prometheus.stop()
        t3 = time.monotonic()
    print(
        f"# simulate {t1 - t0:.0f} s ({om.name} {len(runs)} runs), backfill {t2 - t1:.0f} s, "
        f"decide {t3 - t2:.0f} s"
    )
    policies = [PERFGEN, ADAPTIVE, *peer_labels("fixed"), *peer_labels("adaptive")]
    by_run = {(r.world.name, r.seed, r.dataset): r for r in runs}
    figures: dict[tuple[str, str], list[Figures]] = {}
    # In seed order: seed i of every policy is a pair (print_paired_regret).
    for (world, seed, policy), timeline in sorted(timelines.items()):
        on_adaptive = policy in (ADAPTIVE, *peer_labels("adaptive"))
        run = by_run[(world, seed, "adaptive" if on_adaptive else "fixed")]
        figures.setdefault((world, policy), []).append(
            measure(
                WORLDS[world], timeline, run, performance.generator.max_chain, args.answer_tokens
            )
        )
    print("\n### worlds\n")
    print_table(
        ["world", "script", "events (incumbent degraded -> best again)"],
        [
            [
                w,
                WORLDS[w].description,
                ", ".join(
                    f"{e.start / 3600:.2f}h-{'end' if e.end is None else f'{e.end / 3600:.2f}h'}"
                    for e in events(WORLDS[w], tokens=args.answer_tokens)
                )
                or "-",
            ]
            for w in worlds
        ],
    )
    reasons = sorted({r for run in runs for r in run.reasons})
    print("\n### adaptive: interval reason right after each paid probe (share, all seeds)\n")
    rows = []
    for w in worlds:
        total: Counter[str] = Counter()
        for run in runs:
            if run.world.name == w:
                total.update(run.reasons)
        n = sum(total.values()) or 1
        rows.append([w, *(f"{100 * total[r] / n:.0f} %" for r in reasons)])
    print_table(["world", *reasons], rows)
    report(figures, worlds, policies)
    print(f"# wall {time.monotonic() - wall:.0f} s")


if __name__ == "__main__":
    main()
