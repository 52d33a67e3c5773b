"""generator.run planning and `perfgen query`, against canned rule numbers.

`FakeRules` stands in for the PromClient: it answers the snapshot's instant queries and
the hysteresis subqueries from per-model numbers, so a whole run (config -> snapshot
-> decisions -> file) is tested without a Prometheus.
"""

from __future__ import annotations

import json
import re
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from perfgen.generator.promql import PrometheusConnection, QueryError, Sample
from perfgen.generator.proxy_toml import only_routes_changed
from perfgen.generator.query_cli import query
from perfgen.generator.run import (
    EXIT_CHANGED,
    EXIT_UNCHANGED,
    GenerateError,
    generate_once,
    plan_routes,
)

NOW = 1_700_000_000.0

# Which number of a model answers a query, by a piece of the series name.
ROLES = (
    ("llm_performance_score", "score"),
    ("llm_meets_thresholds", "meets"),
    ("llm_requests:", "samples"),
    ("llm_ttft_seconds", "ttft"),
    ("llm_decode_tokens_per_second", "decode"),
    ("llm_request_success", "success"),
    ("llm_probe_timestamp_seconds", "probe"),
)


def model(
    score: float | None, *, meets: int = 1, samples: float = 20, probe_age: float | None = 10
) -> dict[str, Any]:
    return dict(
        score=score,
        meets=meets,
        samples=samples,
        ttft=0.4,
        decode=60.0,
        success=1.0,
        probe_age=probe_age,
    )


class FakeRules:
    """The PromClient methods fetch_snapshot uses, answered from `models`."""

    def __init__(self, models: dict[str, dict[str, Any]], provider: str = "p") -> None:
        self.models = {(provider, name): spec for name, spec in models.items()}

    def instant(self, query: str, at: float | None = None) -> list[Sample]:
        at = NOW if at is None else at
        if query.startswith("max(timestamp("):  # the newest rule evaluation: now
            return [Sample({}, at, at)]
        role = next(field for needle, field in ROLES if needle in query)
        hold = re.search(r"(\w+)_over_time\(\(\S+(?: offset \d+ms)?\)\[(\d+)ms:(\d+)ms\]\)", query)
        if hold:  # the hysteresis subqueries: the score was the same at every step
            fn, span, step = hold.group(1), int(hold.group(2)), int(hold.group(3))
            end = round(at * 1000)
            steps = len(range(-(-(end - span) // step) * step, end + 1, step))
            return [
                Sample(
                    {"provider": p, "model": m, "scenario": "default"},
                    float(steps if fn == "count" else spec["score"]),
                    at,
                )
                for (p, m), spec in self.models.items()
                if spec["score"] is not None
            ]
        out = []
        for (provider, name), spec in self.models.items():
            labels = {"provider": provider, "model": name}
            if role == "probe":
                value = None if spec["probe_age"] is None else at - spec["probe_age"]
            else:
                value = spec[role]
            if role in ("score", "meets"):
                labels["scenario"] = "default"
                if spec["score"] is None and spec["samples"] == 0:
                    value = None
            if value is not None:
                out.append(Sample(labels, float(value), at))
        return out


def write_config(
    path: Path,
    default: str,
    *,
    models: str = "abcdef",
    extra: str = "",
    margin: float = 0.10,
    hold: str = "15m",
    max_chain: int = 3,
) -> Path:
    path.write_text(f"""# kept
[proxy]
host = "127.0.0.1"
port = 3456
api_key = "sk-proxy"

[router]
default = "{default}"
strategy = "fill_first"

[[providers]]
name = "p"
api_base_url = "http://127.0.0.1:1/v1"
api_key = "$NO_KEY"
models = {json.dumps(list(models))}

[performance]
test_interval_minutes = 5
min_test_count = 5
window = "1h"

[performance.generator]
hysteresis_margin = {margin}
hysteresis_for = "{hold}"
max_chain = {max_chain}
{extra}""")
    return path


def default_route(path: Path) -> str:
    return tomllib.loads(path.read_text())["router"]["default"]


# --------------------------------------------------------------------------- freshness


def test_no_probe_timestamps_at_all_leave_routes_untouched(tmp_path):
    # Scores still in the rules' window, but the exporter has been silent for longer
    # than stale_after: reordering on these numbers would act on stale data.
    cfg = write_config(tmp_path / "config.toml", "p,a|p,b")
    silent = FakeRules({"a": model(0.5, probe_age=None), "b": model(0.9, probe_age=None)})
    plan = plan_routes(cfg, silent, at=NOW)
    assert not plan.changed and plan.new_text == plan.old_text
    assert [d.untouched for d in plan.decisions] == [True]
    assert any("every model counts as stale" in w for w in plan.warnings), plan.warnings
    # The same numbers with recent probes do reorder.
    assert plan_routes(cfg, FakeRules({"a": model(0.5), "b": model(0.9)}), at=NOW).changed


# --------------------------------------------------------------------------- queries


class FailingRules(FakeRules):
    """FakeRules whose queries fail when they contain one of `failing`; the slowest first."""

    def __init__(self, models: dict[str, dict[str, Any]], *failing: str) -> None:
        super().__init__(models)
        self.failing = failing

    def instant(self, query: str, at: float | None = None) -> list[Sample]:
        for i, needle in enumerate(self.failing):
            if needle in query:
                time.sleep(0.05 * (len(self.failing) - i))
                raise QueryError(f"{needle} failed")
        return super().instant(query, at)


def test_queries_run_together_but_the_first_failed_one_in_order_is_the_error(tmp_path):
    cfg = write_config(tmp_path / "config.toml", "p,a|p,b")
    # The score query fails last in time but comes first: its error is the one raised.
    rules = FailingRules(
        {"a": model(0.5), "b": model(0.9)}, "llm_performance_score", "llm_probe_timestamp_seconds"
    )
    with pytest.raises(QueryError, match="llm_performance_score failed"):
        plan_routes(cfg, rules, at=NOW)
    # The hold-time queries count only when there are scores (as when they ran last).
    empty = FailingRules({"a": model(None, samples=0)}, "_over_time((")
    plan = plan_routes(cfg, empty, at=NOW)
    assert not plan.changed and any("series at all" in w for w in plan.warnings)
    with pytest.raises(QueryError, match="_over_time"):
        plan_routes(cfg, FailingRules({"a": model(0.5)}, "_over_time(("), at=NOW)


# --------------------------------------------------------------------------- --out


def test_out_second_run_with_unchanged_data_is_unchanged(tmp_path):
    cfg = write_config(tmp_path / "config.toml", "p,a|p,b")
    source = cfg.read_text()
    out = tmp_path / "proxy.toml"
    rules = FakeRules({"a": model(0.5), "b": model(0.9)})
    first = generate_once(cfg, rules, out=out, at=NOW)
    assert first.exit_code == EXIT_CHANGED and first.written == str(out)
    assert default_route(out) == "p,b|p,a" and cfg.read_text() == source
    second = generate_once(cfg, rules, out=out, at=NOW + 60)
    assert second.exit_code == EXIT_UNCHANGED, second.plan.diff()
    assert second.written is None and not second.plan.changed
    assert second.plan.decisions[0].old_chain == first.plan.decisions[0].new_chain
    # The output is --config with other route values, nothing else.
    assert only_routes_changed(source, out.read_text()) == []
    assert out.read_text() == source.replace('"p,a|p,b"', '"p,b|p,a"')


def test_out_hysteresis_defends_the_primary_written_there(tmp_path):
    cfg = write_config(tmp_path / "config.toml", "p,a|p,b")
    out = tmp_path / "proxy.toml"
    generate_once(cfg, FakeRules({"a": model(0.5), "b": model(0.9)}), out=out, at=NOW)
    assert default_route(out) == "p,b|p,a"
    # a is now a little better than b, inside the margin: b, the primary in use, stays
    # (the config's own primary, a, is not the incumbent).
    close = FakeRules({"a": model(0.95), "b": model(0.9)})
    result = generate_once(cfg, close, out=out, at=NOW + 60)
    assert result.exit_code == EXIT_UNCHANGED and default_route(out) == "p,b|p,a"
    assert any("hysteresis holds primary: p,b stays" in n for n in result.plan.decisions[0].notes)


def test_out_routes_config_no_longer_allows_are_not_reused(tmp_path):
    cfg = write_config(tmp_path / "config.toml", "p,a|p,b", models="ab")
    out = tmp_path / "proxy.toml"
    # Written when the provider still had model "c"; --config has dropped it since.
    out.write_text(cfg.read_text().replace('"p,a|p,b"', '"p,c|p,a"'))
    rules = FakeRules({"a": model(0.9), "b": model(0.5)})
    result = generate_once(cfg, rules, out=out, at=NOW)
    assert result.plan.decisions[0].old_chain[0].model == "a"  # --config's route
    assert result.written and default_route(out) == "p,a|p,b"
    # An output that is not TOML is replaced by a complete config.
    out.write_text("not = [toml")
    result = generate_once(cfg, rules, out=out, at=NOW)
    assert result.exit_code == EXIT_UNCHANGED and out.read_text() == cfg.read_text()


def test_out_edited_during_the_run_is_not_overwritten(tmp_path, monkeypatch):
    cfg = write_config(tmp_path / "config.toml", "p,a|p,b")
    out = tmp_path / "proxy.toml"
    rules = FakeRules({"a": model(0.5), "b": model(0.9)})
    real_instant = rules.instant

    def edit_then_answer(query: str, at: float | None = None) -> list[Sample]:
        out.write_text("# someone else's\n")
        return real_instant(query, at)

    monkeypatch.setattr(rules, "instant", edit_then_answer)
    with pytest.raises(GenerateError, match="changed while generating"):
        generate_once(cfg, rules, out=out, at=NOW)
    assert out.read_text() == "# someone else's\n"


# --------------------------------------------------------------------------- query


def test_query_lists_models_in_the_order_generate_chooses(tmp_path, monkeypatch):
    # Ties and models without fresh data are where a separate sort would drift: f and
    # a tie (the old chain decides), d has too few samples and e no data (old order).
    cfg = write_config(
        tmp_path / "config.toml",
        "p,e|p,d|p,f|p,a",
        margin=0.0,
        hold="0s",
        max_chain=6,
        extra="[performance.scenarios.default]\n"
        'candidates = ["p,c", "p,a", "p,b", "p,d", "p,e", "p,f"]\n',
    )
    rules = FakeRules(
        {
            "a": model(0.5),
            "b": model(0.9),
            "c": model(0.7, meets=0),
            "d": model(0.8, samples=2),
            "e": model(None, samples=0),
            "f": model(0.5),
        }
    )
    plan = plan_routes(cfg, rules, at=NOW)
    chain = [str(route) for route in plan.decisions[0].new_chain]
    assert chain == ["p,b", "p,f", "p,a", "p,c", "p,e", "p,d"]
    monkeypatch.setattr(PrometheusConnection, "client", lambda self: rules)
    result = CliRunner().invoke(
        query,
        ["--prometheus", "http://unused", "--config", str(cfg), "--format", "json"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)["models"]
    assert [f"{r['provider']},{r['model']}" for r in rows] == chain
