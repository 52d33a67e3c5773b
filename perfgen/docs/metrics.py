"""Every metric with its type, labels and help, read from what the code really exposes.

Nothing here names a metric: each table is the parsed exposition of the real builder,
fed with made-up inputs that make every series appear (a probe result with every figure
measured, and a failed one; a freshly started exporter; a generator after one run).
"""

from __future__ import annotations

import dataclasses
import io
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from perfgen.docs.config_keys import REFERENCE
from perfgen.docs.markdown import code, table

if TYPE_CHECKING:
    from perfgen.exporter.result import ProbeResult

# Made-up names fed into the builders; a label showing one of these is an input label
# (provider, model, ...), any other label has a fixed set of values worth listing.
PROVIDER, MODEL, MODULE, SCENARIO = "docs-provider", "docs-model", "docs-module", "docs-scenario"
_INPUTS = {PROVIDER, MODEL, MODULE, SCENARIO}

# client_python's own collectors: documented upstream, and platform-dependent.
_RUNTIME_PREFIXES = ("process_", "python_")


def _families(exposition: bytes | str) -> list[Metric]:
    text = exposition.decode("utf-8") if isinstance(exposition, bytes) else exposition
    return list(text_string_to_metric_families(text))


def _merge(*groups: Iterable[Metric]) -> list[Metric]:
    seen: dict[str, Metric] = {}
    for group in groups:
        for family in group:
            if family.name in seen:
                seen[family.name].samples += family.samples
            else:
                seen[family.name] = family
    return list(seen.values())


def _labels(family: Metric, inputs: set[str]) -> str:
    values: dict[str, list[str]] = {}
    for sample in family.samples:
        for name, value in sample.labels.items():
            if name != "le" and value not in values.setdefault(name, []):
                values[name].append(value)
    parts = []
    for name, seen in values.items():
        # One value (a version, a scenario fed in here) says nothing about the label's range;
        # several that are not inputs are a fixed set worth listing (reasons, outcomes).
        if len(seen) == 1 or inputs.intersection(seen):
            parts.append(code(name))
        else:
            parts.append(f"{code(name)}: " + " ".join(code(v) for v in seen))
    return ", ".join(parts)


def _meaning(family: Metric) -> str:
    text = family.documentation
    if family.type == "histogram":
        bounds = sorted(
            {float(s.labels["le"]) for s in family.samples if s.labels.get("le", "+Inf") != "+Inf"}
        )
        if bounds:
            unit = " s" if family.name.endswith("_seconds") else ""
            text += f" Buckets {bounds[0]:g} … {bounds[-1]:g}{unit}."
    return text


def _exposed_name(family: Metric) -> str:
    return family.name + "_total" if family.type == "counter" else family.name


def _table(families: Iterable[Metric], inputs: set[str] = _INPUTS) -> str:
    families = list(families)
    rows = []
    runtime = False
    # client_python's Counter adds a `_created` series, which the parser reads as a gauge.
    created = {f"{f.name}_created" for f in families if f.type == "counter"}
    for family in families:
        if family.name in created:
            continue
        if family.name.startswith(_RUNTIME_PREFIXES):
            runtime = True
            continue
        rows.append(
            [code(_exposed_name(family)), family.type, _labels(family, inputs), _meaning(family)]
        )
    if runtime:
        rows.append(
            [
                "`process_*`, `python_*`",
                "",
                "",
                "client_python's process, platform and GC collectors.",
            ]
        )
    return "\n".join(table(["metric", "type", "labels", "meaning"], rows))


def _probe_results() -> list[ProbeResult]:
    from perfgen.exporter.result import ProbeResult, RequestResult

    ok = RequestResult(
        success=True,
        http_status=200,
        ttft_seconds=0.5,
        first_content_seconds=0.6,
        duration_seconds=2.0,
        output_tokens=64,
        input_tokens=20,
        tokens_per_second=42.0,
        token_count_source="usage",
    )
    # A figure added to RequestResult later gets a value too, so that its series shows up.
    unmeasured = {"failure_reason", "failure_detail", "retry_after_seconds"}
    more: dict[str, Any] = {}
    for field in dataclasses.fields(RequestResult):
        if field.name in unmeasured or getattr(ok, field.name) is not None:
            continue
        kind = str(field.type)
        if "float" in kind or "int" in kind:
            more[field.name] = 1.0 if "float" in kind else 1
    ok = dataclasses.replace(ok, **more)
    failed = RequestResult(success=False, failure_reason="timeout", failure_detail="timed out")
    started = time.time()
    return [
        ProbeResult(
            PROVIDER, MODEL, MODULE, started, 2.0, (ok, ok), aggregate_tokens_per_second=60.0
        ),
        ProbeResult(PROVIDER, MODEL, MODULE, started, 2.0, (failed,)),
    ]


def render_probe(root: Path) -> str:
    from perfgen.exporter.metrics import CumulativeStore, render_probe

    groups = []
    for result in _probe_results():
        store = CumulativeStore()
        store.observe(result)
        exposition = render_probe(store, (PROVIDER, MODEL, MODULE), result, cached=False)
        groups.append(_families(exposition))
    return _table(_merge(*groups))


def render_exporter(root: Path) -> str:
    from perfgen.exporter.service import ExporterService

    exporter = ExporterService(str(REFERENCE), log_stream=io.StringIO())
    config = exporter.config
    names = {*config.performance.modules, *config.providers}
    names |= {model for provider in config.providers.values() for model in provider.models}
    return _table(_families(generate_latest(exporter.registry)), _INPUTS | names)


def render_generator(root: Path) -> str:
    from perfgen.config import Route
    from perfgen.generator.metrics import GeneratorMetrics

    metrics = GeneratorMetrics()
    metrics.init_scenarios([SCENARIO])
    metrics.record_success(time.time(), {SCENARIO: Route(PROVIDER, MODEL)}, [SCENARIO])
    return _table(_families(generate_latest(metrics.registry)))
