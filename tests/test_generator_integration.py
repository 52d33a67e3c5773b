"""perfgen generate / query against a real Prometheus holding recording-rule series.

The series (the names of docs/CONTRACTS.md, as the recording rules would write them)
are backfilled with `promtool tsdb create-blocks-from openmetrics` into the TSDB
directory before Prometheus starts, with timestamps up to a few seconds ago: a fresh
TSDB has an empty head, so Prometheus serves blocks that reach "now" (asserted below).
One Prometheus serves every case; each case has its own provider names.

The ranking cases run on both backends (the `backend` fixture): the same series are
imported into a single-node VictoriaMetrics with its default settings (30 s latency
offset, response cache) through `/api/v1/import/prometheus`, and every decision must be
the same. That holds because the hold time ends at the newest rule evaluation, not at
"now" (generator/snapshot.py, HoldQueries).
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from perfgen.config import Route
from perfgen.generator.generate_cli import generate
from perfgen.generator.promql import PromClient
from perfgen.generator.proxy_schema import validate_text
from perfgen.generator.proxy_toml import only_routes_changed
from perfgen.generator.query_cli import query
from perfgen.generator.ranking import Policy, rank
from perfgen.generator.run import explain, generate_once, plan_routes
from perfgen.generator.snapshot import fetch_snapshot, hold_queries, model_stats
from perfgen.stack.processes import (
    BinaryMissing,
    ManagedProcess,
    find_binary,
    free_port,
    http_get,
    project_root,
    start_prometheus,
    start_victoriametrics,
)

pytestmark = pytest.mark.integration

ROOT = project_root()
# The backend below records every series for window 1h, as this file's other configs
# read; the example config (window 20m) is read with that window.
EXAMPLE = (
    (ROOT / "examples" / "config.example.toml")
    .read_text()
    .replace('window = "20m"', 'window = "1h"', 1)
)
assert 'window = "1h"' in EXAMPLE
# The data's "now": set again when a fixture loads the series, so that however late in a
# long test run a backend starts, the series end seconds before the queries.
NOW = time.time()
HISTORY = 2 * 3600  # seconds of backfilled history
STEP = 30

Score = float | Callable[[float], float | None]  # constant, or f(age in seconds)


def model(
    score: Score,
    *,
    meets: int = 1,
    samples: float = 20,
    ttft: float = 0.4,
    ttft_mean: float = 0.3,
    decode: float = 60.0,
    success: float = 1.0,
    success_upper: float | None = None,
    decode_stderr: float | None = None,
    probe_age: float = 0,
    scenarios: tuple[str, ...] = ("default",),
    region: str | None = None,
) -> dict[str, object]:
    return dict(
        region=region,
        decode_stderr=decode_stderr,
        score=score,
        meets=meets,
        samples=samples,
        ttft=ttft,
        ttft_mean=ttft_mean,
        decode=decode,
        success=success,
        success_upper=success_upper,
        probe_age=probe_age,
        scenarios=scenarios,
    )


# provider -> model -> series. Every case uses its own providers.
DATA: dict[str, dict[str, dict[str, object]]] = {
    # A faster model moves to the front; a model without data stays behind.
    "fast": {"a": model(0.50), "b": model(0.90), "c": model(None, samples=0)},
    # A model over the latency threshold drops behind one that meets them.
    "thresh": {"a": model(0.95, meets=0, ttft=9.0), "b": model(0.60)},
    # Inside the margin (0.85 < 1.1 x 0.80): no takeover. "d" became much better only
    # five minutes ago, less than the 15 m hold time: no takeover either.
    "hyst": {
        "a": model(0.80),
        "b": model(0.85),
        "c": model(0.50),
        "d": model(lambda age: 0.99 if age < 300 else 0.40),
    },
    # Far better now, but "b" has a score only for the last 10 minutes of the 15 m hold
    # time and "n" was NaN once 5 minutes ago: neither takes over. "c" has had its score
    # for 20 minutes and does.
    "late": {
        "a": model(0.20),
        "b": model(lambda age: 0.35 if age < 600 else None),
        "c": model(lambda age: 0.35 if age < 1200 else None),
        "n": model(lambda age: math.nan if 300 <= age < 330 else 0.35),
    },
    # Stale: the last probe is four hours old, so its (still recorded) score is ignored.
    "stale": {"a": model(0.30), "b": model(0.95, probe_age=4 * 3600)},
    # The example config's own providers: deepseek-chat becomes the fastest.
    "groq": {"llama-3.3-70b-versatile": model(0.55), "llama-3.1-8b-instant": model(0.5)},
    "deepseek": {"deepseek-chat": model(0.91), "deepseek-reasoner": model(0.7)},
    "openrouter": {
        "anthropic/claude-3.5-sonnet": model(0.6),
        # As recorded with success_rate_confidence: the ratio's upper bound.
        "deepseek/deepseek-r1": model(0.3, meets=0, success=0.5, success_upper=0.88),
    },
    "ollama": {"qwen2.5-coder:latest": model(0.4, scenarios=("default", "background"))},
    # b leads by 0.10, beyond the 10 % margin (0.08), but both windows measured their
    # decode rates (60 tokens/s) only to 20 tokens/s: the difference's standard error is
    # 0.4 x 0.2 x sqrt 2 = 0.113, and switch_confidence 0.9 asks 1.28 of them (0.145).
    "noisy": {"a": model(0.80, decode_stderr=20.0), "b": model(0.90, decode_stderr=20.0)},
}
# The same models measured from two regions (series with a `region` label): eu ranks a
# first, us ranks b first, and folded to the worst region a scores 0.4, b 0.5.
REGIONAL: dict[str, dict[str, dict[str, object]]] = {
    "geo": {
        "a@eu": model(0.90, region="eu"),
        "b@eu": model(0.50, region="eu"),
        "a@us": model(0.40, region="us"),
        "b@us": model(0.80, region="us"),
    }
}


def reset_now() -> None:
    global NOW
    NOW = time.time()


def openmetrics() -> str:
    """Every series, grouped by family as OpenMetrics requires."""
    families: dict[str, list[str]] = {}

    def add(name: str, labels: dict[str, str], value: Callable[[float], float | None]) -> None:
        text = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        lines = families.setdefault(name, [])
        for t in range(int(NOW - HISTORY), int(NOW - 5), STEP):
            v = value(NOW - t)
            if v is not None:
                lines.append(f"{name}{{{text}}} {'NaN' if math.isnan(v) else v} {t}")

    for provider, models in {**DATA, **REGIONAL}.items():
        for key, spec in models.items():
            name = key.split("@")[0]
            labels = {"provider": provider, "model": name}
            if spec["region"]:
                labels["region"] = str(spec["region"])
            score = spec["score"]
            score_at = score if callable(score) else (lambda age, s=score: s)
            if spec["samples"]:
                for scenario in spec["scenarios"]:
                    add(
                        "provider_model:llm_performance_score:ratio_1h",
                        {**labels, "scenario": scenario},
                        score_at,
                    )
                    add(
                        "provider_model:llm_meets_thresholds:bool_1h",
                        {**labels, "scenario": scenario},
                        lambda age, s=spec: s["meets"],
                    )
                for rule, key in (
                    ("llm_requests:increase_1h", "samples"),
                    ("llm_ttft_seconds:p95_1h", "ttft"),
                    ("llm_ttft_seconds:mean_1h", "ttft_mean"),
                    ("llm_decode_tokens_per_second:mean_1h", "decode"),
                    ("llm_request_success:ratio_1h", "success"),
                ):
                    add(f"provider_model:{rule}", labels, lambda age, s=spec, k=key: s[k])
                if spec["decode_stderr"] is not None:
                    add(
                        "provider_model:llm_decode_tokens_per_second:stderr_1h",
                        labels,
                        lambda age, s=spec: s["decode_stderr"],
                    )
                if spec["success_upper"] is not None:
                    add(
                        "provider_model:llm_request_success:wilson_upper_1h",
                        labels,
                        lambda age, s=spec: s["success_upper"],
                    )
            add(
                "llm_probe_timestamp_seconds",
                {**labels, "module": "latency"},
                lambda age, s=spec: NOW - age - s["probe_age"],
            )
    out = []
    for name, lines in families.items():
        out.append(f"# TYPE {name} gauge")
        out.extend(lines)
    out.append("# EOF")
    return "\n".join(out) + "\n"


def prometheus_text() -> str:
    """openmetrics() as Prometheus text format: VictoriaMetrics' import wants timestamps in
    milliseconds (OpenMetrics has seconds), and needs neither `# TYPE` nor `# EOF`."""
    lines = []
    for line in openmetrics().splitlines():
        if line.startswith("#"):
            continue
        sample, seconds = line.rsplit(" ", 1)
        lines.append(f"{sample} {int(seconds) * 1000}")
    return "\n".join(lines) + "\n"


def load_victoriametrics(workdir: Path, *, fresh_reads: bool) -> ManagedProcess:
    """A single-node VictoriaMetrics holding openmetrics()'s series, searchable."""
    process = start_victoriametrics(workdir, fresh_reads=fresh_reads)
    try:
        url = process.url or ""
        reset_now()
        response = requests.post(
            f"{url}/api/v1/import/prometheus", data=prometheus_text(), timeout=30
        )
        assert response.status_code == 204, response.text
        # Imported rows are searchable once flushed from the in-memory buffers.
        requests.get(f"{url}/internal/force_flush", timeout=10).raise_for_status()
        query = 'provider_model:llm_performance_score:ratio_1h{provider="fast",model="b"}'
        deadline = time.monotonic() + 15
        while not PromClient(url).instant(query):
            if time.monotonic() > deadline:
                raise process.failure("shows no imported series after 15s")
            time.sleep(0.2)
    except BaseException:
        process.stop()
        raise
    return process


@pytest.fixture(scope="module", params=["prometheus", "victoriametrics"])
def backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Prometheus, then VictoriaMetrics with its default settings, holding the same series."""
    if request.param == "prometheus":
        yield request.getfixturevalue("prometheus")
        return
    from conftest import require_binaries

    require_binaries("victoria-metrics")
    process = load_victoriametrics(tmp_path_factory.mktemp("vm-defaults"), fresh_reads=False)
    try:
        yield process.url or ""
    finally:
        process.stop()


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    try:
        promtool = find_binary("promtool")
        find_binary("prometheus")
    except BinaryMissing as exc:
        if os.environ.get("PERFGEN_REQUIRE_BINARIES") == "1":
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    workdir = tmp_path_factory.mktemp("generator-prometheus")
    source = workdir / "series.om"
    reset_now()
    source.write_text(openmetrics())
    subprocess.run(
        [
            promtool,
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            str(source),
            str(workdir / "prometheus-data"),
        ],
        check=True,
        capture_output=True,
    )
    process: ManagedProcess = start_prometheus(
        workdir, "global:\n  scrape_interval: 15s\n", retention="100y"
    )
    try:
        yield process.url or ""
    finally:
        process.stop()


def write_config(
    tmp_path: Path, provider: str, models: list[str], router: dict[str, str], extra: str = ""
) -> Path:
    routes = "\n".join(f'{key} = "{value}"' for key, value in router.items())
    text = f"""# a comment the generator must keep
[proxy]
host = "127.0.0.1"
port = 3456
api_key = "sk-proxy"

[router]
{routes}
strategy = "fill_first"  # keep me too

[[providers]]
name = "{provider}"
api_base_url = "http://127.0.0.1:1/v1"
api_key = "$NO_KEY"
models = {json.dumps(models)}

[performance]
test_interval_minutes = 5
min_test_count = 5
window = "1h"

[performance.generator]
hysteresis_margin = 0.10
hysteresis_for = "15m"
max_chain = 3
{extra}"""
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def run_generate(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(generate, list(args), catch_exceptions=False)
    # Whatever happened, every config file left behind is one the proxy accepts.
    for flag in ("--config", "--out"):
        if flag in args:
            path = Path(args[args.index(flag) + 1])
            if path.exists():
                assert validate_text(path.read_text()) == [], path
    return result.exit_code, result.stdout, result.stderr


def router(path: Path) -> dict[str, object]:
    return tomllib.loads(path.read_text())["router"]


# --------------------------------------------------------------------------- generate


def test_backfilled_series_reach_now(prometheus):
    samples = PromClient(prometheus).instant(
        'provider_model:llm_performance_score:ratio_1h{provider="fast",model="b"}'
    )
    assert samples and samples[0].value == 0.9


def test_a_lead_within_the_windows_noise_does_not_switch(backend, tmp_path):
    confident = (
        "switch_confidence = 0.9\n"
        '[performance.score]\nform = "capped"\nlatency_statistic = "mean"\n'
        "latency_reference_ms = 1000\nthroughput_reference_tokens_per_sec = 100\n"
    )
    cfg = write_config(tmp_path, "noisy", ["a", "b"], {"default": "noisy,a|noisy,b"}, confident)
    code, out, err = run_generate("--config", str(cfg), "--prometheus", backend, "--explain")
    assert code == 0, err
    assert router(cfg)["default"] == "noisy,a|noisy,b"
    assert "switch_confidence asks a lead of 0.145" in out
    # The margin alone lets b take the place.
    cfg.write_text(cfg.read_text().replace("switch_confidence = 0.9", "switch_confidence = 0"))
    assert run_generate("--config", str(cfg), "--prometheus", backend)[0] == 3
    assert router(cfg)["default"] == "noisy,b|noisy,a"


def test_faster_model_moves_to_front(backend, tmp_path):
    cfg = write_config(
        tmp_path,
        "fast",
        ["a", "b", "c"],
        {"default": "fast,a|fast,b"},
        '[performance.scenarios.web_search]\ncandidates = ["fast,c", "fast,a"]\n',
    )
    before = cfg.read_text()
    code, out, err = run_generate("--config", str(cfg), "--prometheus", backend)
    assert code == 3, err
    after = cfg.read_text()
    assert router(cfg)["default"] == "fast,b|fast,a"
    # A scenario absent from [router] is added because it has candidates (c: no data).
    assert router(cfg)["web_search"] == "fast,a|fast,c"
    assert (tmp_path / "config.toml.bak").read_text() == before
    assert "routes changed: default, web_search" in err and "-default" in out
    assert only_routes_changed(before, after) == [] and validate_text(after) == []
    # Run again: already the best order, nothing to do, the file is not rewritten.
    mtime = cfg.stat().st_mtime_ns
    assert run_generate("--config", str(cfg), "--prometheus", backend)[0] == 0
    assert cfg.stat().st_mtime_ns == mtime


def test_model_over_threshold_drops_behind(backend, tmp_path):
    cfg = write_config(tmp_path, "thresh", ["a", "b"], {"default": "thresh,a|thresh,b"})
    code, out, err = run_generate("--config", str(cfg), "--prometheus", backend, "--explain")
    assert code == 3, err
    assert router(cfg)["default"] == "thresh,b|thresh,a"
    assert "fails thresholds: p95 TTFT 9.000 s > 5 s" in out
    assert validate_text(cfg.read_text()) == []


def test_challenger_inside_hysteresis_margin_does_not_take_over(backend, tmp_path):
    cfg = write_config(
        tmp_path,
        "hyst",
        ["a", "b", "c", "d"],
        {"default": "hyst,a|hyst,b", "think": "hyst,c|hyst,d"},
    )
    before = cfg.read_bytes()
    code, out, err = run_generate("--config", str(cfg), "--prometheus", backend, "--explain")
    assert code == 0, err
    assert cfg.read_bytes() == before
    assert not (tmp_path / "config.toml.bak").exists()
    assert "hysteresis holds primary: hyst,a stays" in out
    # d is far better now, but only for the last 5 minutes of the 15 m hold time.
    assert "hysteresis holds primary: hyst,c stays" in out
    # With a zero hold time the margin alone decides, and d takes over at once.
    quick = cfg.read_text().replace('hysteresis_for = "15m"', 'hysteresis_for = "0s"')
    cfg.write_text(quick)
    assert run_generate("--config", str(cfg), "--prometheus", backend)[0] == 3
    assert router(cfg) == {
        "default": "hyst,a|hyst,b",
        "think": "hyst,d|hyst,c",
        "strategy": "fill_first",
    }


def test_challenger_needs_a_score_for_the_whole_hold_time(backend, tmp_path):
    cfg = write_config(
        tmp_path,
        "late",
        ["a", "b", "c", "n"],
        {"default": "late,a|late,b", "think": "late,a|late,c", "background": "late,a|late,n"},
    )
    code, out, err = run_generate("--config", str(cfg), "--prometheus", backend, "--explain")
    assert code == 3, err
    assert router(cfg) == {
        "default": "late,a|late,b",
        "think": "late,c|late,a",
        "background": "late,a|late,n",
        "strategy": "fill_first",
    }
    for challenger in ("b", "n"):
        assert (
            f"hysteresis holds primary: late,a stays (late,{challenger} lowest score "
            "over 15m 0.350 (no score for the whole hold time)"
        ) in out, out
    assert "hysteresis switches primary to late,c: beat late,a for 15m" in out, out


def test_stale_model_keeps_its_place_after_fresh_ones(backend, tmp_path):
    cfg = write_config(tmp_path, "stale", ["a", "b"], {"default": "stale,b|stale,a"})
    code, out, err = run_generate("--config", str(cfg), "--prometheus", backend, "--explain")
    assert code == 3, err
    assert router(cfg)["default"] == "stale,a|stale,b"
    assert "no fresh data: last probe 4.0 h ago" in out, out


def test_no_data_at_all_leaves_route_untouched(backend, tmp_path):
    cfg = write_config(tmp_path, "nodata", ["x", "y"], {"default": "nodata,y|nodata,x"})
    before = cfg.read_bytes()
    code, out, err = run_generate("--config", str(cfg), "--prometheus", backend, "--explain")
    assert code == 0 and cfg.read_bytes() == before
    assert "scenario default: untouched" in out


def test_decisions_hold_when_the_rules_last_ran_a_while_ago(backend, tmp_path):
    # The generator runs 90 s after the newest rule evaluation (rules evaluated every
    # minute, remote write and vmalert in between). With the hold time ending at "now",
    # VictoriaMetrics, whose lookback follows the samples' own interval, would find no
    # score at the last steps and never let a challenger take over, while Prometheus
    # (5 min lookback) would. Ending at the newest evaluation, both decide alike.
    cfg = write_config(
        tmp_path,
        "late",
        ["a", "b", "c", "n"],
        {"default": "late,a|late,b", "think": "late,a|late,c"},
    )
    plan = plan_routes(cfg, PromClient(backend), at=NOW + 90)
    chains = {d.scenario: d.chain_text for d in plan.decisions}
    assert chains == {"default": "late,a|late,b", "think": "late,c|late,a"}, explain(plan)


@pytest.mark.parametrize(
    ("region", "order"),
    [("eu", ["a", "b"]), ("us", ["b", "a"]), (None, ["b", "a"])],
)
def test_region_ranks_from_its_own_series_and_without_one_from_the_worst(backend, region, order):
    # eu: a 0.9, b 0.5; us: a 0.4, b 0.8; every region folded to its worst: a 0.4, b 0.5.
    snap = fetch_snapshot(
        PromClient(backend),
        "1h",
        hold_seconds=900,
        stale_after="15m",
        stale_after_seconds=900,
        region=region,
    )
    routes = [Route("geo", "a"), Route("geo", "b")]
    stats = {route: model_stats(snap, "default", route) for route in routes}
    ranked = rank(routes, stats, Policy(min_samples=5))
    assert [item.route.model for item in ranked] == order
    expected = {"eu": (0.9, 0.5), "us": (0.4, 0.8), None: (0.4, 0.5)}[region]
    assert (stats[routes[0]].score, stats[routes[1]].score) == expected
    # Every step of the hold time has a score in each region: coverage survives the fold.
    assert all(item.hold_covered for item in stats.values())
    # One region's snapshot holds only series of that region.
    if region is not None:
        assert {key[0] for key in snap.keys()} == {"geo"}


@pytest.mark.parametrize(("region", "default"), [("eu", "geo,a|geo,b"), ("us", "geo,b|geo,a")])
def test_generate_and_query_with_region(backend, tmp_path, region, default):
    cfg = write_config(tmp_path, "geo", ["a", "b"], {"default": "geo,a|geo,b"})
    code, out, err = run_generate(
        "--config", str(cfg), "--prometheus", backend, "--region", region, "--explain"
    )
    assert code == (0 if default == "geo,a|geo,b" else 3), err
    assert router(cfg)["default"] == default
    code, out, err = run_query(
        "--prometheus", backend, "--config", str(cfg), "--region", region, "--format", "json"
    )
    assert code == 0, err
    payload = json.loads(out)
    assert payload["region"] == region
    assert [r["model"] for r in payload["models"]] == default.replace("geo,", "").split("|")
    code, out, _ = run_query("--prometheus", backend, "--config", str(cfg), "--region", region)
    assert out.splitlines()[0] == f"scenario default, window 1h, region {region}"
    # Without --region the worst region decides: b (0.5 in eu) beats a (0.4 in us).
    assert run_generate("--config", str(cfg), "--prometheus", backend)[0] in (0, 3)
    assert router(cfg)["default"] == "geo,b|geo,a"


def test_example_config_changes_only_route_values(prometheus, tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text(EXAMPLE)
    code, out, err = run_generate("--config", str(cfg), "--prometheus", prometheus)
    assert code == 3, err
    after = cfg.read_text()
    old_doc, new_doc = tomllib.loads(EXAMPLE), tomllib.loads(after)
    # deepseek-chat beats the margin; openrouter (0.60) beats groq (0.55) by 9 %, more
    # than the example's 5 % margin, so it moves ahead of groq as well.
    assert new_doc["router"]["default"] == (
        "deepseek,deepseek-chat|openrouter,anthropic/claude-3.5-sonnet|groq,llama-3.3-70b-versatile"
    )
    # think: deepseek-r1 fails thresholds, so the reasoner stays first.
    assert new_doc["router"]["think"] == EXAMPLE_ROUTER["think"]
    for doc in (old_doc, new_doc):
        for key in ("default", "background", "think", "long_context", "web_search", "image"):
            doc["router"].pop(key, None)
    assert old_doc == new_doc  # everything but the route values parses the same
    changed = [line for line in _line_diff(EXAMPLE, after)]
    assert changed and all(
        line[2:].startswith(("default =", "background =", "think =")) for line in changed
    ), changed
    assert validate_text(after) == []


EXAMPLE_ROUTER = tomllib.loads(EXAMPLE)["router"]


def _line_diff(old: str, new: str) -> list[str]:
    import difflib

    return [
        line
        for line in difflib.ndiff(old.splitlines(), new.splitlines())
        if line[:2] in ("- ", "+ ")
    ]


def test_dry_run_and_out(prometheus, tmp_path):
    cfg = write_config(tmp_path, "fast", ["a", "b", "c"], {"default": "fast,a|fast,b"})
    before = cfg.read_bytes()
    code, out, err = run_generate("--config", str(cfg), "--prometheus", prometheus, "--dry-run")
    assert code == 3 and cfg.read_bytes() == before
    assert '-default = "fast,a|fast,b"\n+default = "fast,b|fast,a"\n' in out
    assert "dry run, nothing written" in err
    target = tmp_path / "out" / "proxy.toml"
    target.parent.mkdir()
    code, out, err = run_generate(
        "--config", str(cfg), "--prometheus", prometheus, "--out", str(target), "--quiet"
    )
    assert code == 3 and cfg.read_bytes() == before and out == ""
    assert router(target)["default"] == "fast,b|fast,a"
    # The next run compares with what --out holds, not with --config: nothing to do
    # (with --every, no "changed" every run, no reload, no route_changes_total bump).
    mtime = target.stat().st_mtime_ns
    code, out, err = run_generate(
        "--config", str(cfg), "--prometheus", prometheus, "--out", str(target)
    )
    assert code == 0 and "routes unchanged" in err and out == "", err
    assert target.stat().st_mtime_ns == mtime and cfg.read_bytes() == before


def test_prometheus_down_leaves_file_byte_identical(tmp_path):
    cfg = write_config(tmp_path, "fast", ["a", "b"], {"default": "fast,a|fast,b"})
    before = cfg.read_bytes()
    code, out, err = run_generate(
        "--config", str(cfg), "--prometheus", f"http://127.0.0.1:{free_port()}", "--retries", "0"
    )
    assert code == 1
    assert cfg.read_bytes() == before and not (tmp_path / "config.toml.bak").exists()
    assert "is unreachable" in err and "the config file is unchanged" in err


def test_usage_errors_exit_2(tmp_path):
    cfg = write_config(tmp_path, "fast", ["a"], {"default": "fast,a"})
    assert run_generate("--config", str(cfg))[0] == 2  # no --prometheus
    assert run_generate("--config", str(cfg), "--prometheus", "http://x", "--every", "soon")[0] == 2
    assert (
        run_generate(
            "--config", str(cfg), "--prometheus", "http://x", "--metrics-listen", "127.0.0.1:1"
        )[0]
        == 2
    )


class ReloadReceiver:
    def __init__(self, status: int) -> None:
        self.calls: list[dict[str, str]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver.calls.append({"path": self.path, **dict(self.headers)})
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"nope" if status >= 400 else b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("status", [200, 500])
def test_reload_after_change(prometheus, tmp_path, monkeypatch, status):
    receiver = ReloadReceiver(status)
    monkeypatch.setenv("TEST_MGMT_KEY", "management-secret")
    try:
        cfg = write_config(tmp_path, "fast", ["a", "b"], {"default": "fast,a|fast,b"})
        code, out, err = run_generate(
            "--config",
            str(cfg),
            "--prometheus",
            prometheus,
            "--reload-url",
            receiver.url,
            "--management-key-env",
            "TEST_MGMT_KEY",
        )
    finally:
        receiver.close()
    assert receiver.calls[0]["path"] == "/v0/management/config/reload"
    assert receiver.calls[0]["X-Management-Key"] == "management-secret"
    # Written either way; a failed reload is an error that leaves a valid file.
    assert router(cfg)["default"] == "fast,b|fast,a" and validate_text(cfg.read_text()) == []
    if status == 200:
        assert code == 3 and "proxy reloaded" in err
    else:
        assert code == 1 and "answered HTTP 500" in err
    assert "management-secret" not in out + err


def test_reload_needs_the_key(tmp_path, monkeypatch):
    monkeypatch.delenv("PERFGEN_MANAGEMENT_KEY", raising=False)
    cfg = write_config(tmp_path, "fast", ["a"], {"default": "fast,a"})
    code, _, err = run_generate(
        "--config", str(cfg), "--prometheus", "http://x", "--reload-url", "http://127.0.0.1:1"
    )
    assert code == 1 and "$PERFGEN_MANAGEMENT_KEY" in err


def test_python_api(prometheus, tmp_path):
    cfg = write_config(tmp_path, "thresh", ["a", "b"], {"default": "thresh,a|thresh,b"})
    result = generate_once(cfg, PromClient(prometheus), dry_run=True)
    assert result.exit_code == 3 and result.written is None
    assert result.plan.changed_scenarios == ["default"]
    assert '+default = "thresh,b|thresh,a"' in result.plan.diff()


def _generate_every(tmp_path: Path, prometheus: str, listen: str) -> subprocess.Popen[str]:
    """`perfgen generate --every 1s --metrics-listen LISTEN --quiet` as its own process."""
    cfg = write_config(tmp_path, "fast", ["a", "b"], {"default": "fast,a|fast,b"})
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from perfgen.cli import main; main(prog_name='perfgen')",
            *("generate", "--config", str(cfg), "--prometheus", prometheus, "--every", "1s"),
            *("--metrics-listen", listen, "--quiet"),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_metrics_listen_port_0_prints_the_port_it_bound(prometheus, tmp_path):
    proc = _generate_every(tmp_path, prometheus, "127.0.0.1:0")
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()  # the first line, printed once the server is bound
        match = re.search(r"generator listening on http://127\.0\.0\.1:(\d+)/metrics", line)
        assert match, line
        port = int(match.group(1))
        assert port != 0
        status, _ = http_get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0


def test_every_serves_metrics_and_stops_on_sigterm(prometheus, tmp_path):
    port = free_port()
    proc = _generate_every(tmp_path, prometheus, f"127.0.0.1:{port}")
    try:
        body = ""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            status, raw = http_get(f"http://127.0.0.1:{port}/metrics")
            body = raw.decode()
            if status == 200 and "perfgen_generator_last_run_success 1.0" in body:
                break
            time.sleep(0.2)
        assert "perfgen_generator_last_run_success 1.0" in body, body
        assert 'perfgen_generator_route_changes_total{scenario="default"} 1.0' in body
        assert (
            'perfgen_generator_primary_info{model="b",provider="fast",scenario="default"} 1.0'
        ) in body
        assert "perfgen_generator_last_success_timestamp_seconds" in body
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "generator listening on http://127.0.0.1:" in err and "stopped" in err


# --------------------------------------------------------------------------- query


def run_query(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(query, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_query_json_ranks_like_the_generator(prometheus, tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text(EXAMPLE)
    code, out, err = run_query(
        "--prometheus",
        prometheus,
        "--config",
        str(cfg),
        "--format",
        "json",
        "--scenario",
        "long_context",
    )
    assert code == 0, err
    payload = json.loads(out)
    assert payload["scenario"] == "long_context" and payload["window"] == "1h"
    rows = {(r["provider"], r["model"]): r for r in payload["models"]}
    first = payload["models"][0]
    assert (first["rank"], first["provider"], first["model"]) == (1, "deepseek", "deepseek-chat")
    assert [r["rank"] for r in payload["models"]] == list(range(1, len(rows) + 1))
    # Only this config's models; the scenario's chain is listed even without data.
    assert {p for p, _ in rows} == {"groq", "deepseek", "openrouter", "ollama"}
    gemini = rows[("openrouter", "google/gemini-2.0-flash-exp")]
    assert gemini["score"] is None and gemini["reason"].startswith("no fresh data")
    assert list(first) == [
        "rank",
        "provider",
        "model",
        "score",
        "ttft_p95_seconds",
        "ttft_mean_seconds",
        "decode_tokens_per_second",
        "success_ratio",
        "success_upper_bound",
        "samples",
        "meets_thresholds",
        "reason",
    ]
    assert first["success_upper_bound"] is None  # not recorded for it: null, not 0
    r1 = rows[("openrouter", "deepseek/deepseek-r1")]
    assert r1["meets_thresholds"] is False and r1["success_upper_bound"] == 0.88
    assert "success ratio 0.500, upper bound 0.880 < 0.95" in r1["reason"]
    meets = [r["meets_thresholds"] for r in payload["models"]]
    assert meets.index(False) > meets.index(True)


def test_query_table_and_csv_without_config(prometheus):
    code, out, err = run_query("--prometheus", prometheus)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "scenario default, window 1h"
    assert lines[1].split()[:3] == ["RANK", "PROVIDER", "MODEL"]
    assert lines[2].split()[:4] == ["1", "hyst", "d", "0.990"]
    stale = next(line for line in lines if line.split()[1:3] == ["stale", "b"])
    assert stale.endswith("no fresh data: last probe 4.0 h ago")
    # Columns are aligned: every row's MODEL column starts where the header's does.
    column = lines[1].index("MODEL")
    assert all(line[column - 2 : column] == "  " for line in lines[2:])
    # One model has a recorded upper bound, so the table shows that column.
    upper = lines[1].index("SUCCESS UPPER")
    r1 = next(line for line in lines if "deepseek/deepseek-r1" in line)
    assert r1[upper : upper + len("SUCCESS UPPER")].strip() == "0.880"
    code, out, _ = run_query(
        "--prometheus", prometheus, "--format", "csv", "--scenario", "background"
    )
    assert code == 0
    header, *rows = out.splitlines()
    assert header == (
        "rank,provider,model,score,ttft_p95_seconds,ttft_mean_seconds,decode_tokens_per_second,"
        "success_ratio,success_upper_bound,samples,meets_thresholds,reason"
    )
    # background has its own series only for ollama; the rest fall back to "default".
    assert rows[0].startswith("1,hyst,d,0.99,")
    assert rows[1].startswith("2,deepseek,deepseek-chat,0.91,0.4,0.3,60.0,1.0,,20.0,true,")


def test_query_prometheus_down_is_an_error():
    code, _, err = run_query("--prometheus", f"http://127.0.0.1:{free_port()}", "--retries", "0")
    assert code == 1 and "unreachable" in err


def test_metrics_endpoint_format_is_prometheus(prometheus):
    # The generator's job scrapes /metrics; nothing else to check here than that this
    # server version accepts the hysteresis subqueries (millisecond offset and range).
    held = hold_queries("1h", 900, NOW + 0.123)
    for promql in held.queries.values():
        response = requests.get(
            f"{prometheus}/api/v1/query",
            params={"query": promql, "time": f"{held.time:.3f}"},
            timeout=5,
        )
        assert response.json()["status"] == "success", response.text
        assert response.json()["data"]["result"]
