"""What probing costs: tokens per probe, and a configuration's spend per day.

The estimate is what `perfgen query --cost` prints: every `/sd` target x module probed
once per `test_interval_minutes` (with adaptive probing, the module that watches every
target once per `min_interval_minutes`, and any module at most that often where a probe
may change a route), each probe paying its module's worst case (`max_tokens x runs x
concurrency` output tokens, about `probe_input_tokens` input tokens), priced by
`[performance.prices]` and capped by the hourly budgets. The measured spend is the
exporter's `perfgen_exporter_probe_cost_dollars_total` and `llm_output_tokens_total`.
"""

from __future__ import annotations

from dataclasses import dataclass

from perfgen.config import Module, Performance, Target
from perfgen.timing import confirming_module, probed_baseline_costs, watch_module

DAY_MINUTES = 24 * 60


def probe_output_tokens(module: Module) -> int:
    """The most output tokens one probe of `module` can spend (its budget reservation)."""
    return module.output_tokens_per_probe


def probe_input_tokens(module: Module) -> int:
    """About how many input tokens one probe of `module` sends (its dollar reservation):
    the padding, or the longest prompt at ~4 characters a token plus the chat framing."""
    prompt = max((len(p) for p in module.prompts), default=0) // 4 + 10
    return max(module.input_tokens, prompt) * module.runs * module.concurrency


@dataclass(frozen=True)
class DailyCost:
    target: Target
    module: str
    probes: float  # per day: fixed intervals, or adaptive probing's steady state
    output_tokens: float
    input_tokens: float
    dollars: float | None  # None: no price configured for the model
    max_probes: float  # per day, adaptive probing at its minimum interval everywhere


def estimate_daily(performance: Performance) -> list[DailyCost]:
    """One row per target x `/sd` module, before the hourly budgets (see `budget_cap`)."""
    rows = []
    shortest = (
        performance.adaptive.min_interval_minutes
        if performance.adaptive.enabled
        else performance.test_interval_minutes
    )
    watch = watch_module(performance)
    confirming = _confirming_module(performance)
    for target in performance.targets:
        price = performance.prices.get(target)
        for name in performance.sd_modules:
            module = performance.modules[name]
            steady = shortest if name == watch else performance.test_interval_minutes
            probes = DAY_MINUTES / steady
            output = probes * probe_output_tokens(module)
            inputs = probes * probe_input_tokens(module)
            rows.append(
                DailyCost(
                    target,
                    name,
                    probes,
                    output,
                    inputs,
                    price.dollars(round(inputs), round(output)) if price else None,
                    _most_probes(performance, shortest, name == confirming),
                )
            )
    return rows


def _confirming_module(performance: Performance) -> str | None:
    """The module adaptive probing confirms a degraded-looking leader with, if it does."""
    if not performance.adaptive.enabled or performance.adaptive.confirm_after_seconds <= 0:
        return None
    return confirming_module(probed_baseline_costs(performance))


def _most_probes(performance: Performance, shortest: float, confirms: bool) -> float:
    """Probes per day at the minimum interval everywhere; a confirming module may add a
    confirmation after every other probe (a streak starts only after a result that did
    not look degraded)."""
    if not confirms:
        return DAY_MINUTES / shortest
    return 2 * DAY_MINUTES / (shortest + performance.adaptive.confirm_after_seconds / 60)


def budget_cap(performance: Performance) -> tuple[float | None, float | None]:
    """The hourly budgets as daily ceilings: (output tokens, dollars); None = unlimited."""
    tokens = performance.max_output_tokens_per_hour
    dollars = performance.max_dollars_per_hour
    return (tokens * 24 if tokens else None, dollars * 24 if dollars else None)


MEASURED_QUERY = (
    "sum by (provider, model) (increase(perfgen_exporter_probe_cost_dollars_total[1d]))"
)


def render_estimate(performance: Performance, measured: dict[Target, float] | None) -> str:
    """The `perfgen query --cost` table: per target, probes, tokens and dollars per day."""
    rows = estimate_daily(performance)
    by_target: dict[Target, list[DailyCost]] = {}
    for row in rows:
        by_target.setdefault(row.target, []).append(row)
    header = ["target", "probes/day", "output tokens/day", "input tokens/day", "$/day (estimate)"]
    if measured is not None:
        header.append("$ last 24 h (measured)")
    lines = [header]
    total_dollars = 0.0
    priced = True
    for target, items in by_target.items():
        dollars = [r.dollars for r in items]
        cost = None if any(d is None for d in dollars) else sum(d or 0.0 for d in dollars)
        priced &= cost is not None
        total_dollars += cost or 0.0
        line = [
            target.name,
            f"{sum(r.probes for r in items):.0f}",
            f"{sum(r.output_tokens for r in items):.0f}",
            f"{sum(r.input_tokens for r in items):.0f}",
            "no price" if cost is None else f"{cost:.4f}",
        ]
        if measured is not None:
            got = measured.get(target)
            line.append("-" if got is None else f"{got:.4f}")
        lines.append(line)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = [
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    ]
    total_tokens = sum(r.output_tokens for r in rows)
    out.append("")
    out.append(
        f"total: {total_tokens:.0f} output tokens/day, "
        + (f"${total_dollars:.4f}/day" if priced else f"${total_dollars:.4f}/day for priced models")
        + f" (each probe at its module's max_tokens; {_cadence(performance)})"
    )
    if performance.adaptive.enabled and total_tokens > 0:
        most = sum(r.max_probes / r.probes * r.output_tokens for r in rows) / total_tokens
        out.append(
            f"adaptive probing: up to {most:.1f}x these figures where a probe may change a "
            "route, within the budgets below"
        )
    tokens_cap, dollars_cap = budget_cap(performance)
    caps = []
    if tokens_cap is not None:
        caps.append(f"{tokens_cap:.0f} output tokens/day")
    if dollars_cap is not None:
        caps.append(f"${dollars_cap:.2f}/day")
    out.append("budget ceiling: " + (", ".join(caps) if caps else "unlimited"))
    return "\n".join(out) + "\n"


def _cadence(performance: Performance) -> str:
    interval = f"{performance.test_interval_minutes:g} min"
    watch = watch_module(performance)
    if watch is None:
        return f"interval {interval}"
    return (
        f"{watch} every {performance.adaptive.min_interval_minutes:g} min, "
        f"the other modules every {interval}"
    )
