"""Every dashboard query returns data from the end-to-end stack's Prometheus.

The data is real: `demo_stack` (tests/conftest.py) runs the simulator, the exporter
probing it, Prometheus scraping /probe through http_sd and evaluating the rendered rules,
and the generator publishing its primary routes. Each query is sent the way Grafana
would send it (variables filled in, instant or range as the panel asks) and must
succeed and find at least one series: an empty panel is a renamed metric or rule. (A
query of a rule the demo's config does not record, the success bound, may be empty.)

Slow (the stack needs 25-35 s until rankings exist); shares the session's stack
with the other end-to-end tests.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

import pytest
from test_grafana import names_in

from perfgen.config import Performance, duration_seconds
from perfgen.grafana.board import REGION_ALL
from perfgen.grafana.queries import Query, extract_queries, regex_escape, substitute
from perfgen.rules.render import recorded_names, render_rules

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

QUERIES = extract_queries()
# Annotations mark events (route changes, firing alerts) that a healthy run may not
# have had yet: they must evaluate, but may be empty.
MAY_BE_EMPTY_KINDS = {"annotation"}
RANGE_SECONDS = 120  # a range query over the last two minutes, like a zoomed-in panel


@dataclass
class Live:
    url: str
    values: dict[str, str]
    step: str
    # The recording rules the running config renders: a panel of a rule that only some
    # configs record (the success bound) must evaluate, and may be empty where it is not.
    recorded: frozenset[str]

    def unrecorded_rules(self, query: Query) -> set[str]:
        names = names_in(substitute(query.expr, self.values))
        return {name for name in names if ":" in name} - self.recorded

    def get(self, path: str, **params: str) -> dict[str, Any]:
        query = urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=30) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            # Prometheus explains a bad query in a JSON body with status 400 or 422.
            return json.loads(exc.read() or b"{}") | {"http_status": exc.code}

    def run(self, query: Query) -> dict[str, Any]:
        expr = substitute(query.expr, self.values)
        if query.instant:
            return self.get("/api/v1/query", query=expr)
        now = time.time()
        return self.get(
            "/api/v1/query_range",
            query=expr,
            start=f"{now - RANGE_SECONDS:.3f}",
            end=f"{now:.3f}",
            step=self.step,
        )


def recorded_rules(performance: Performance) -> frozenset[str]:
    return recorded_names(render_rules(performance)["recording.yml"])


def _wait_for(live: Live, expr: str, timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        result = live.get("/api/v1/query", query=expr)["data"]["result"]
        if result or time.monotonic() > deadline:
            return result
        time.sleep(1.0)


def _healthy_model(live: Live, window: str, module: str) -> tuple[str, str] | None:
    """The best-scored model whose last `module` probe succeeded.

    A failed probe leaves its per-probe gauges out (unknown, not zero), so a model caught
    mid-incident (the end-to-end story degrades one) would empty the drill-down's
    last-probe panels for a reason that is not the dashboard's fault.
    """
    score = f'provider_model:llm_performance_score:ratio_{window}{{scenario="default"}}'
    expr = (
        f"sort_desc(max by (provider, model) ({score}) and on (provider, model) "
        f'(max by (provider, model) (llm_probe_success{{module="{module}"}}) == 1))'
    )
    rows = live.get("/api/v1/query", query=expr)["data"]["result"]
    return (rows[0]["metric"]["provider"], rows[0]["metric"]["model"]) if rows else None


@pytest.fixture(scope="module")
def live(demo_stack: Any) -> Live:
    """The demo stack once every default candidate is ranked and the generator has run."""
    demo_stack.wait_for_rankings(timeout=240)
    window = demo_stack.window
    module = demo_stack.config.performance.sd_modules[0]
    live = Live(
        demo_stack.prometheus_url,
        {},
        demo_stack.scrape_interval,
        recorded_rules(demo_stack.config.performance),
    )
    # The ranking exists; the generator's info series follow its next run.
    for expr in ("perfgen_generator_primary_info", "perfgen_exporter_probes_in_flight"):
        assert _wait_for(live, expr, timeout=60), f"{expr} never appeared"
    picked = _healthy_model(live, window, module)
    assert picked, "no ranked model has a successful probe"
    provider, model = picked
    # What Grafana computes for a zoomed-in panel: $__interval is the step, and
    # $__rate_interval = max($__interval + scrape interval, 4 x scrape interval).
    scrape = duration_seconds(demo_stack.scrape_interval)
    live.values.update(
        datasource="prometheus",
        # The default, All: finds series with a region label and without one alike.
        region=REGION_ALL,
        window=window,
        scenario="default",
        provider=provider,
        model=model,
        module=module,
        __interval=f"{scrape:g}s",
        __rate_interval=f"{4 * scrape:g}s",
    )
    return live


@pytest.mark.parametrize("query", QUERIES, ids=[f"{q.dashboard}:{q.where}" for q in QUERIES])
def test_dashboard_query_returns_data(live: Live, query: Query) -> None:
    answer = live.run(query)
    assert answer["status"] == "success", f"{query}: {answer}"
    if query.kind in MAY_BE_EMPTY_KINDS or live.unrecorded_rules(query):
        # tests/test_grafana.py checks that the example config records every rule used.
        return
    assert answer["data"]["result"], (
        f"empty result for {query}\n(sent: {substitute(query.expr, live.values)})"
    )


def test_only_optional_rules_may_be_empty(live: Live) -> None:
    # The exception above covers the rules that need a config key, nothing renamed.
    unrecorded = {name for query in QUERIES for name in live.unrecorded_rules(query)}
    window = live.values["window"]
    assert unrecorded == {f"provider_model:llm_request_success:wilson_upper_{window}"}


def empty_for_one_region(live: Live) -> tuple[str, list[str]]:
    """With one region chosen, as a multi-region deployment would, the queries that find
    nothing: (the region, the empty queries). Every query that reads a region-labelled
    scrape must find data (region is a target label, so every series of that scrape,
    and the rules over them, carry it).

    Queries of a job scraped without a region (say, a generator that serves every
    region) show only under All, by design, and are left out. The demo stack has no
    regions; tests/test_scaleout.py runs this against its two-region VictoriaMetrics.
    """
    rows = live.get("/api/v1/query", query='group by (job, region) (up{region!=""})')
    labelled = [row["metric"] for row in rows["data"]["result"]]
    assert labelled, "no scraped series carries a region label"
    region = sorted(metric["region"] for metric in labelled)[0]
    jobs = {metric["job"] for metric in labelled if metric["region"] == region}
    # Grafana formats a regex variable's value with regex escaping.
    values = {**live.values, "region": regex_escape(region)}
    empty = []
    for query in QUERIES:
        named = {j for alt in re.findall(r'job=~?"([^"]+)"', query.expr) for j in alt.split("|")}
        if query.kind in MAY_BE_EMPTY_KINDS or (named and not named & jobs):
            continue
        if live.unrecorded_rules(query):
            continue
        answer = Live(live.url, values, live.step, live.recorded).run(query)
        assert answer["status"] == "success", f"{query}: {answer}"
        if not answer["data"]["result"]:
            empty.append(f"{query} (sent: {substitute(query.expr, values)})")
    return region, empty
