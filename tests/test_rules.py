"""The rendered rules: up to date, valid for promtool, unit-tested, and refused on bad config.

promtool (Prometheus 2.42) and amtool (Alertmanager 0.25) are real binaries; the tests
that need one skip when it is missing.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from perfgen.cli import main
from perfgen.config import (
    BUILTIN_MODULES,
    AdaptiveSettings,
    GeneratorSettings,
    Performance,
    load_config,
    parse_config,
)
from perfgen.rules.render import (
    RENDERED_DIR,
    TEMPLATES,
    RuleError,
    baseline_modules,
    prom_duration,
    prom_number,
    render_rules,
    render_warnings,
    rule_params,
    timings,
    write_rules,
)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_CONFIG = ROOT / "examples" / "config.example.toml"
RULE_TESTS = ROOT / "rules" / "tests"
# The hand-computed suite's own, frozen config and the rules it renders.
HAND_CONFIG = RULE_TESTS / "config.toml"
HAND_RENDERED = RULE_TESTS / "rendered"
ALERTMANAGER_CONFIG = ROOT / "deploy" / "alertmanager.yml"

PROMTOOL = shutil.which("promtool")
AMTOOL = shutil.which("amtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed")
needs_amtool = pytest.mark.skipif(AMTOOL is None, reason="amtool not installed")

CONTRACT_RECORDS = {
    "provider_model:llm_ttft_seconds:p50_{w}",
    "provider_model:llm_ttft_seconds:p95_{w}",
    "provider_model:llm_ttft_seconds:p99_{w}",
    "provider_model:llm_ttft_seconds:mean_{w}",
    "provider_model_module:llm_ttft_seconds:p95_{w}",
    "provider_model:llm_first_content_seconds:p95_{w}",
    "provider_model:llm_request_duration_seconds:p95_{w}",
    "provider_model:llm_decode_tokens_per_second:mean_{w}",
    "provider_model:llm_ttft_seconds:stderr_{w}",
    "provider_model:llm_decode_tokens_per_second:stderr_{w}",
    "provider_model:llm_requests:increase_{w}",
    "provider_model:llm_request_success:ratio_{w}",
    # The example config sets success_rate_confidence; without it there is no bound.
    "provider_model:llm_request_success:wilson_upper_{w}",
    "provider_model:llm_score_component:ratio_{w}",
    "provider_model:llm_performance_score:ratio_{w}",
    "provider_model:llm_meets_thresholds:bool_{w}",
}
CONTRACT_ALERTS = {
    "PerfgenProbeFailing",
    "PerfgenLatencyHigh",
    "PerfgenThroughputLow",
    "PerfgenScoreDegraded",
    "PerfgenProbeDataStale",
    "PerfgenExporterDown",
    "PerfgenProbeBudgetExhausted",
    "PerfgenProbeMisconfigured",
    "PerfgenGeneratorNotSucceeding",
    "PerfgenRouteFlapping",
    "PerfgenRoutesNotApplied",
}


def example_performance() -> Performance:
    return load_config(EXAMPLE_CONFIG).performance


def rules_of(text: str) -> list[dict]:
    return [rule for group in yaml.safe_load(text)["groups"] for rule in group["rules"]]


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60, cwd=cwd)


# --------------------------------------------------------------------------- rendering


def test_committed_rendering_is_up_to_date() -> None:
    rendered = render_rules(example_performance())
    assert set(rendered) == set(TEMPLATES)
    for filename, text in rendered.items():
        committed = (RENDERED_DIR / filename).read_text(encoding="utf-8")
        assert committed == text, (
            f"rules/rendered/{filename} is out of date with the templates; run "
            "`perfgen rules render --config examples/config.example.toml --out rules/rendered`"
        )


def test_hand_computed_suite_renders_from_its_own_config() -> None:
    # rules/tests/*_test.yml are computed by hand for rules/tests/config.toml; their rules
    # follow the templates like the example's, from a config that does not move.
    rendered = render_rules(load_config(HAND_CONFIG).performance)
    for filename, text in rendered.items():
        committed = (HAND_RENDERED / filename).read_text(encoding="utf-8")
        assert committed == text, (
            f"rules/tests/rendered/{filename} is out of date with the templates; run "
            "`perfgen rules render --config rules/tests/config.toml --out rules/tests/rendered`"
        )


def test_rule_names_are_the_contracts() -> None:
    rendered = render_rules(example_performance())
    records = {rule["record"] for rule in rules_of(rendered["recording.yml"])}
    window = example_performance().window
    assert records == {name.format(w=window) for name in CONTRACT_RECORDS}
    alerts = rules_of(rendered["alerts.yml"])
    assert {rule["alert"] for rule in alerts} == CONTRACT_ALERTS
    for rule in alerts:
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert set(rule["annotations"]) == {"summary", "description", "runbook_url"}
        anchor = rule["alert"].lower()
        assert rule["annotations"]["runbook_url"] == f"docs/runbook.md#{anchor}"


def test_every_alert_has_a_runbook_section() -> None:
    runbook = (ROOT / "docs" / "runbook.md").read_text(encoding="utf-8")
    for name in CONTRACT_ALERTS:
        # GitHub's anchor for a `## Name` heading is the name in lower case.
        assert f"\n## {name}\n" in runbook


def test_runbook_base_url_is_a_render_option() -> None:
    rendered = render_rules(example_performance(), runbook_base_url="https://example.org/rb")
    for rule in rules_of(rendered["alerts.yml"]):
        assert rule["annotations"]["runbook_url"] == (
            f"https://example.org/rb#{rule['alert'].lower()}"
        )


def test_every_selector_of_exporter_data_names_its_job() -> None:
    # Without the job matcher a second scrape of the same metrics (a federation, a test
    # job) would be summed into the score.
    selector = re.compile(r"(?<![\w:])(llm_\w+|perfgen_\w+|up)\{([^}]*)\}")
    checked = 0
    for text in render_rules(example_performance()).values():
        for rule in rules_of(text):
            for metric, matchers in selector.findall(rule["expr"]):
                assert matchers.startswith('job="'), (metric, rule["expr"])
                checked += 1
    assert checked > 20


# --------------------------------------------------------------------------- baseline modules

BASELINE = 'job="llm_probe",module=~"health|latency|throughput"'


def test_baseline_modules_are_those_without_load_or_padding() -> None:
    # Built-ins: long_context pads the prompt, concurrent runs 4 streams.
    assert baseline_modules(example_performance()) == ("health", "latency", "throughput")
    assert rule_params(example_performance()).baseline_matcher == (
        'module=~"health|latency|throughput"'
    )
    # Data-driven: a module of one's own with no padding and one stream joins them; a
    # built-in given parallel streams or a padded prompt leaves them.
    config = parse_config(
        '[[providers]]\nname = "groq"\napi_base_url = "https://api.groq.com/openai/v1"\n'
        'api_key = "k"\nmodels = ["m"]\n\n'
        '[performance.modules.coding]\nprompts = ["Write a function."]\n\n'
        "[performance.modules.health]\nconcurrency = 2\n\n"
        "[performance.modules.throughput]\ninput_tokens = 1000\n"
    )
    assert baseline_modules(config.performance) == ("coding", "latency")
    assert 'module=~"coding|latency"' in render_rules(config.performance)["recording.yml"]


def test_baseline_matcher_is_regex_escaped(tmp_path: Path) -> None:
    modules = {
        "a.b": replace(BUILTIN_MODULES["latency"], name="a.b"),
        "long_context": BUILTIN_MODULES["long_context"],
    }
    performance = replace(example_performance(), modules=modules, sd_modules=("a.b",))
    # The regex a\.b as a PromQL string literal.
    assert rule_params(performance).baseline_matcher == 'module=~"a\\\\.b"'
    if PROMTOOL is not None:
        write_rules(render_rules(performance), tmp_path)
        result = promtool("check", "rules", *(str(tmp_path / name) for name in TEMPLATES))
        assert result.returncode == 0, result.stdout + result.stderr


def test_no_baseline_module_is_refused() -> None:
    modules = {
        name: module
        for name, module in BUILTIN_MODULES.items()
        if name in ("concurrent", "long_context")
    }
    performance = replace(
        example_performance(), modules=modules, sd_modules=("concurrent", "long_context")
    )
    with pytest.raises(RuleError, match=r"performance\.modules.*input_tokens = 0"):
        render_rules(performance)


def test_score_figures_read_only_the_baseline_modules() -> None:
    rendered = render_rules(replace(example_performance(), window="1h"))
    recording = {rule["record"]: rule["expr"] for rule in rules_of(rendered["recording.yml"])}
    for name in (
        "provider_model:llm_ttft_seconds:p50_1h",
        "provider_model:llm_ttft_seconds:p95_1h",
        "provider_model:llm_ttft_seconds:p99_1h",
        "provider_model:llm_first_content_seconds:p95_1h",
        "provider_model:llm_request_duration_seconds:p95_1h",
        "provider_model:llm_decode_tokens_per_second:mean_1h",
        "provider_model:llm_requests:increase_1h",
    ):
        selectors = re.findall(r"\b(llm_\w+)\{([^}]*)\}", recording[name])
        assert selectors and all(matchers == BASELINE for _, matchers in selectors), name
    # The per-module p95 and the success ratio read every module.
    for name in (
        "provider_model_module:llm_ttft_seconds:p95_1h",
        "provider_model:llm_request_success:ratio_1h",
    ):
        assert "module=~" not in recording[name] and 'job="llm_probe"' in recording[name]
    alerts = {rule["alert"]: rule["expr"] for rule in rules_of(rendered["alerts.yml"])}
    assert f"llm_probe_ttft_seconds{{{BASELINE}}}" in alerts["PerfgenLatencyHigh"]
    assert f"llm_probe_tokens_per_second{{{BASELINE}}}" in alerts["PerfgenThroughputLow"]
    assert "module=~" not in alerts["PerfgenProbeFailing"]


def test_warns_when_no_baseline_module_is_probed() -> None:
    performance = replace(example_performance(), sd_modules=("long_context", "concurrent"))
    warnings = render_warnings(performance)
    assert len(warnings) == 1
    assert "no baseline module" in warnings[0] and "no model will get a score" in warnings[0]
    # Only baseline modules count towards min_test_count: 4 probes of latency per 1h
    # window at fixed 15-minute intervals, below 5.
    performance = replace(
        example_performance(),
        sd_modules=("latency", "concurrent"),
        window="1h",
        min_test_count=5,
        test_interval_minutes=15,
        adaptive=AdaptiveSettings(enabled=False),
    )
    assert "holds about 4 requests" in render_warnings(performance)[0]


def test_cli_refuses_a_config_without_baseline_module(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '[[providers]]\nname = "groq"\napi_base_url = "https://api.groq.com/openai/v1"\n'
        'api_key = "$GROQ_API_KEY"\nmodels = ["llama-3.1-8b-instant"]\n\n'
        "[performance.modules.latency]\nconcurrency = 2\n\n"
        "[performance.modules.throughput]\nconcurrency = 2\n\n"
        "[performance.modules.health]\ninput_tokens = 100\n"
    )
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main, ["rules", "render", "--config", str(config), "--out", str(out)]
    )
    assert result.exit_code == 1, result.output
    assert str(config) in result.stderr and "performance.modules" in result.stderr
    assert not out.exists()


# --------------------------------------------------------------------------- derivations


def test_durations_are_prometheus_durations() -> None:
    assert prom_duration(5400) == "1h30m"
    assert prom_duration(22.5) == "23s"  # rounded up: never shorter than derived
    assert prom_duration(120) == "2m"
    assert prom_duration(0) == "0s"
    assert prom_duration(90061) == "1d1h1m1s"
    assert prom_number(1 - 0.95) == "0.05"
    assert prom_number(5000 / 1000) == "5"


def test_for_durations_derive_from_the_config() -> None:
    # The example probes adaptively: latency watches every target every 5 min, throughput
    # waits up to 1h, so only it is stale after 3 of those hours.
    default = timings(example_performance())
    assert (default.probe_for, default.infra_for, default.score_for) == ("7m30s", "2m", "20m")
    assert (default.baseline, default.stale_after, default.flap_range) == ("2h", "15m", "1h")
    assert default.module_stale_after == "3h"
    fixed = timings(replace(example_performance(), adaptive=AdaptiveSettings(enabled=False)))
    assert (fixed.probe_for, fixed.stale_after, fixed.module_stale_after) == ("1h30m", "3h", "3h")

    # The demo: probes every 15 s over a 2 m window must be able to fire within a minute.
    demo = timings(Performance(window="2m", test_interval_minutes=0.25))
    assert (demo.probe_for, demo.infra_for, demo.score_for) == ("23s", "23s", "2m")
    assert (demo.baseline, demo.stale_after) == ("12m", "45s")

    # Probes follow scrapes: a 3 s test interval does not make measurements 3 s apart.
    faster = timings(Performance(window="2m", test_interval_minutes=0.05))
    assert (faster.probe_for, faster.stale_after) == ("23s", "45s")
    explicit = timings(Performance(generator=GeneratorSettings(stale_after="10m")))
    assert explicit.stale_after == "10m"


def test_warns_when_the_window_cannot_hold_min_test_count_samples() -> None:
    # One probe per hour of each of the two /sd modules: 2 requests in a 1h window.
    hourly = Performance(test_interval_minutes=60, window="1h")
    warnings = render_warnings(hourly)
    assert len(warnings) == 1
    assert "holds about 2 requests" in warnings[0] and "min_test_count 5" in warnings[0]
    # The example watches every 5 min with throughput hourly: 4 or 5 requests in 20m.
    assert render_warnings(example_performance()) == []
    assert render_warnings(Performance(window="2m", test_interval_minutes=0.25)) == []
    # 30m probed every 15 min holds 4 requests, but 2 while the oldest pair has left and
    # the next is not yet scraped: min_test_count 3 would unrank every model at each probe.
    dipping = Performance(test_interval_minutes=15, window="30m", min_test_count=3)
    (dip,) = render_warnings(dipping)
    assert "holds 4 requests" in dip and "only 2 from when the oldest" in dip
    assert "min_test_count to at most 2" in dip
    assert render_warnings(replace(dipping, min_test_count=2)) == []
    # Adaptive probing brings a target short of results to its minimum interval: a 30m
    # window probed at most every 30 min holds 6 requests at the 5 min minimum ...
    adaptive = AdaptiveSettings(enabled=True, min_interval_minutes=5)
    assert (
        render_warnings(Performance(test_interval_minutes=30, window="30m", adaptive=adaptive))
        == []
    )
    # ... and 2 when the minimum is the interval itself.
    slow = AdaptiveSettings(enabled=True, min_interval_minutes=30)
    warnings = render_warnings(Performance(test_interval_minutes=30, window="30m", adaptive=slow))
    assert "holds about 2 requests" in warnings[0] and "min_interval_minutes" in warnings[0]
    # Once its results are in, only the watch (latency) stays at the minimum: watching
    # every 15 min with throughput hourly, a 30m window dips to 1 request (the bench's
    # 15/60 run lost every model's rank at each probe), every 10 min it keeps 2.
    hourly_watch = Performance(test_interval_minutes=60, window="30m", min_test_count=2)
    (dip,) = render_warnings(
        replace(hourly_watch, adaptive=AdaptiveSettings(enabled=True, min_interval_minutes=15))
    )
    assert "latency every 15m, throughput every 1h" in dip and "only 1 from" in dip
    tens = AdaptiveSettings(enabled=True, min_interval_minutes=10)
    assert render_warnings(replace(hourly_watch, adaptive=tens)) == []


# --------------------------------------------------------------------------- promtool


@needs_promtool
def test_promtool_checks_the_committed_rules() -> None:
    files = [str(RENDERED_DIR / name) for name in TEMPLATES]
    result = promtool("check", "rules", *files)
    assert result.returncode == 0, result.stdout + result.stderr
    # promtool reports lint findings (such as duplicate rules) without failing.
    assert "lint" not in (result.stdout + result.stderr).lower()


@needs_promtool
@pytest.mark.slow  # promtool runs every unit test of the committed rules: ~10 s
def test_promtool_unit_tests_of_the_committed_rules() -> None:
    tests = sorted(str(path) for path in RULE_TESTS.glob("*.yml"))
    assert len(tests) >= 2
    result = promtool("test", "rules", *tests)
    assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------------------------- CLI


def test_cli_renders_into_out_dir(tmp_path: Path) -> None:
    out = tmp_path / "rules"
    result = CliRunner().invoke(
        main, ["rules", "render", "--config", str(EXAMPLE_CONFIG), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    for filename in TEMPLATES:
        assert (out / filename).read_text() == (RENDERED_DIR / filename).read_text()
    assert "warning" not in result.stderr  # the example's window holds enough samples


def test_cli_warns_about_a_window_that_cannot_hold_min_test_count(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '[[providers]]\nname = "groq"\napi_base_url = "https://api.groq.com/openai/v1"\n'
        'api_key = "$GROQ_API_KEY"\nmodels = ["llama-3.1-8b-instant"]\n\n'
        '[performance]\ntest_interval_minutes = 60\nwindow = "1h"\n'
    )
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main, ["rules", "render", "--config", str(config), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output  # a warning, not an error
    assert "warning:" in result.stderr and "min_test_count 5" in result.stderr
    assert all((out / filename).exists() for filename in TEMPLATES)


def test_cli_runbook_option(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        [
            "rules",
            "render",
            "--config",
            str(EXAMPLE_CONFIG),
            "--out",
            str(tmp_path),
            "--runbook-base-url",
            "https://runbooks.example.org/perfgen",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "https://runbooks.example.org/perfgen#perfgenexporterdown" in (
        (tmp_path / "alerts.yml").read_text()
    )


BAD_PERFORMANCE = {
    "weights not summing to 1": (
        "[performance.weights]\nlatency = 0.5\nthroughput = 0.4\nreliability = 0.2\n",
        "performance.weights",
    ),
    "negative threshold": (
        "[performance.thresholds]\nmin_throughput_tokens_per_sec = -1\n",
        "performance.thresholds.min_throughput_tokens_per_sec",
    ),
    "unknown key": (
        '[performance]\nwindwo = "1h"\n',
        "performance.windwo",
    ),
    "bad window": (
        '[performance]\nwindow = "an hour"\n',
        "performance.window",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_PERFORMANCE))
def test_cli_refuses_a_bad_performance_table(case: str, tmp_path: Path) -> None:
    table, key = BAD_PERFORMANCE[case]
    config = tmp_path / "config.toml"
    config.write_text(
        '[[providers]]\nname = "groq"\napi_base_url = "https://api.groq.com/openai/v1"\n'
        'api_key = "$GROQ_API_KEY"\nmodels = ["llama-3.1-8b-instant"]\n\n' + table
    )
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main, ["rules", "render", "--config", str(config), "--out", str(out)]
    )
    assert result.exit_code == 1, result.output
    assert key in result.stderr
    assert str(config) in result.stderr
    assert not out.exists()  # nothing half-written


def test_cli_missing_config_is_an_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        [
            "rules",
            "render",
            "--config",
            str(tmp_path / "nope.toml"),
            "--out",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 1
    assert "nope.toml" in result.stderr


def test_cli_missing_option_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["rules", "render", "--out", "x"])
    assert result.exit_code == 2


# --------------------------------------------------------------------------- Alertmanager


@needs_amtool
def test_alertmanager_config_is_valid() -> None:
    result = subprocess.run(
        [AMTOOL, "check-config", str(ALERTMANAGER_CONFIG)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@needs_amtool
@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (
            ["alertname=PerfgenProbeFailing", "severity=critical", "provider=groq"],
            "perfgen-critical",
        ),
        (["alertname=PerfgenLatencyHigh", "severity=warning", "provider=groq"], "perfgen-warning"),
        (["alertname=SomethingElse"], "perfgen-warning"),
    ],
)
def test_alertmanager_routes_by_severity(labels: list[str], receiver: str) -> None:
    result = subprocess.run(
        [AMTOOL, "config", "routes", "test", "--config.file", str(ALERTMANAGER_CONFIG), *labels],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receiver


def test_alertmanager_groups_by_provider_and_model() -> None:
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    assert config["route"]["group_by"] == ["provider", "model"]
    receivers = {r["name"]: r for r in config["receivers"]}
    assert all("webhook_configs" in r for r in receivers.values())


@needs_promtool
def test_odd_model_names_are_quoted(tmp_path: Path) -> None:
    # Model names come from the config: quotes and backslashes must not break PromQL.
    config = parse_config(
        '[[providers]]\nname = "groq"\napi_base_url = "https://api.groq.com/openai/v1"\n'
        'api_key = "k"\nmodels = ["we\\"ird\\\\name:latest"]\n'
    )
    files = render_rules(config.performance)
    assert 'model="we\\"ird\\\\name:latest"' in files["alerts.yml"]
    write_rules(files, tmp_path)
    result = promtool("check", "rules", *(str(tmp_path / name) for name in TEMPLATES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_disabled_probing_expects_no_target() -> None:
    performance = example_performance()
    assert "cause: missing" in render_rules(performance)["alerts.yml"]
    disabled = replace(performance, enabled=False)
    assert "cause: missing" not in render_rules(disabled)["alerts.yml"]
