"""The config loader: the example loads, and every mistake names the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from perfgen.config import (
    ConfigError,
    Route,
    ScoreSettings,
    Secret,
    Target,
    duration_seconds,
    load_config,
    parse_chain,
    parse_config,
)

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "config.example.toml"

PROVIDERS = """
[[providers]]
name = "groq"
api_base_url = "https://api.groq.com/openai/v1"
api_key = "$GROQ_API_KEY"
models = ["llama-3.3-70b-versatile", "llama-3.1-8b-instant"]

[[providers]]
name = "anthropic"
api_base_url = "https://api.anthropic.com"
api_key = "sk-ant-literal-secret"
models = ["claude-3-5-haiku"]
"""


def load(performance: str = "", providers: str = PROVIDERS) -> object:
    return parse_config(providers + performance, "proxy.toml")


def error_of(performance: str, providers: str = PROVIDERS) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load(performance, providers)
    assert str(caught.value).startswith("proxy.toml: ")
    return caught.value


def test_example_config_loads_with_spec_values() -> None:
    config = load_config(EXAMPLE)
    perf = config.performance
    # Tuned by bench/routing_quality.py (docs/benchmarks.md): adaptive probing with the
    # latency module watching every 5 min and the throughput module up to hourly, a 20m
    # window, ranked from 2.
    assert perf.test_interval_minutes == 60
    assert (perf.adaptive.enabled, perf.adaptive.min_interval_minutes) == (True, 5)
    assert perf.adaptive.confirm_after_seconds == 30
    assert (perf.window, perf.min_test_count) == ("20m", 2)
    assert perf.score.failure_ratio_reference == 1.0
    assert (perf.score.form, perf.score.latency_statistic) == ("capped", "mean")
    assert perf.score.latency_reference_ms == 1000
    assert perf.success_rate_confidence == 0.999
    assert perf.weights.latency == 0.4
    assert perf.thresholds.max_latency_ms == 5000
    assert Target("ollama", "qwen2.5-coder:latest") in perf.targets
    assert perf.scenario_weights("background").throughput == 0.6
    assert perf.scenario_weights("default").throughput == 0.4
    assert perf.generator.max_chain == 3
    assert config.providers["deepseek"].protocol == "openai"


def test_protocol_is_inferred_from_the_name_and_can_be_overridden() -> None:
    config = load()
    assert config.providers["anthropic"].protocol == "anthropic"
    assert config.providers["groq"].protocol == "openai"
    overridden = load('[performance.providers.groq]\nprotocol = "anthropic"\n')
    assert overridden.providers["groq"].protocol == "anthropic"


def test_gemini_needs_an_explicit_protocol() -> None:
    gemini = (
        PROVIDERS
        + """
[[providers]]
name = "gemini"
api_base_url = "https://generativelanguage.googleapis.com"
api_key = "$GEMINI_KEY"
models = ["gemini-2.0-flash"]
"""
    )
    error = error_of("", gemini)
    assert error.key == "performance.providers.gemini.protocol"


@pytest.mark.parametrize(
    ("performance", "key"),
    [
        ("[performance]\ntest_interval_minuts = 5\n", "performance.test_interval_minuts"),
        (
            "[performance.weights]\nlatency = 0.5\nthroughput = 0.4\nreliability = 0.2\n",
            "performance.weights",
        ),
        (
            "[performance.thresholds]\nmax_latency_ms = -1\n",
            "performance.thresholds.max_latency_ms",
        ),
        (
            "[performance.thresholds]\nmin_success_rate = 1.5\n",
            "performance.thresholds.min_success_rate",
        ),
        ("[performance]\nmax_concurrent_tests = true\n", "performance.max_concurrent_tests"),
        ('[performance]\nwindow = "an hour"\n', "performance.window"),
        (
            '[performance.test_models]\nmodels = ["groq:no-such-model"]\n',
            "performance.test_models.models[0]",
        ),
        ('[performance.test_models]\nmodels = ["nobody:x"]\n', "performance.test_models.models[0]"),
        ('[performance.test_models]\nmodules = ["nope"]\n', "performance.test_models.modules[0]"),
        ("[performance.scenarios.fast]\ncandidates = []\n", "performance.scenarios.fast"),
        (
            '[performance.scenarios.think]\ncandidates = ["groq,missing"]\n',
            "performance.scenarios.think.candidates[0]",
        ),
        (
            "[performance.modules.latency]\nmax_tokens = 0\n",
            "performance.modules.latency.max_tokens",
        ),
        (
            '[performance.modules.latency]\nexpected_response = "("\n',
            "performance.modules.latency.expected_response",
        ),
        (
            '[performance.generator]\nhysteresis_for = "soon"\n',
            "performance.generator.hysteresis_for",
        ),
        ('[performance.exporter]\nlog_format = "xml"\n', "performance.exporter.log_format"),
        (
            "[performance.budget]\nmax_output_tokens_per_hour = -5\n",
            "performance.budget.max_output_tokens_per_hour",
        ),
        ('[performance.providers.nobody]\nprotocol = "openai"\n', "performance.providers.nobody"),
        (
            "[performance.score]\nlatency_reference_ms = 0\n",
            "performance.score.latency_reference_ms",
        ),
        (
            '[performance.score]\nthroughput_reference_tokens_per_sec = "fast"\n',
            "performance.score.throughput_reference_tokens_per_sec",
        ),
        ("[performance.score]\nlatency_reference = 1000\n", "performance.score.latency_reference"),
        ('[performance.score]\nform = "clamped"\n', "performance.score.form"),
        ("[performance.score]\nform = 1\n", "performance.score.form"),
        (
            '[performance.score]\nlatency_statistic = "p50"\n',
            "performance.score.latency_statistic",
        ),
        (
            "[performance.score]\nfailure_ratio_reference = 0\n",
            "performance.score.failure_ratio_reference",
        ),
        (
            "[performance.score]\nfailure_ratio_reference = 1.5\n",
            "performance.score.failure_ratio_reference",
        ),
        ("[performance]\nsuccess_rate_confidence = 1\n", "performance.success_rate_confidence"),
        ("[performance]\nsuccess_rate_confidence = 0.3\n", "performance.success_rate_confidence"),
        ("[performance]\nsuccess_rate_confidence = -1\n", "performance.success_rate_confidence"),
        (
            "[performance.generator]\nswitch_confidence = 0.3\n",
            "performance.generator.switch_confidence",
        ),
        (
            "[performance.generator]\nswitch_confidence = 1\n",
            "performance.generator.switch_confidence",
        ),
    ],
)
def test_bad_performance_values_name_the_key(performance: str, key: str) -> None:
    assert error_of(performance).key == key


def test_success_rate_confidence_defaults_to_the_plain_ratio() -> None:
    assert parse_config(PROVIDERS, "proxy.toml").performance.success_rate_confidence == 0
    set_to = parse_config(PROVIDERS + "[performance]\nsuccess_rate_confidence = 0.95\n", "p.toml")
    assert set_to.performance.success_rate_confidence == 0.95
    message = str(error_of("[performance]\nsuccess_rate_confidence = 1\n"))
    assert "0 (judge the plain ratio) or at least 0.5 and below 1, got 1" in message


def test_switch_confidence_is_off_by_default_and_needs_the_mean_ttft() -> None:
    assert parse_config(PROVIDERS, "p.toml").performance.generator.switch_confidence == 0
    mean = '[performance.score]\nlatency_statistic = "mean"\n'
    on = "[performance.generator]\nswitch_confidence = 0.9\n"
    generator = parse_config(PROVIDERS + mean + on, "p.toml").performance.generator
    assert generator.switch_confidence == 0.9
    # The rules record the standard error of the mean TTFT only: under the default p95
    # statistic the key could not mean what it says.
    error = error_of(on)
    assert error.key == "performance.generator.switch_confidence"
    assert 'latency_statistic = "mean" is required' in str(error)


def test_provider_without_models_is_refused() -> None:
    error = error_of("", '[[providers]]\nname = "x"\napi_base_url = "http://h"\napi_key = "k"\n')
    assert error.key == "providers[0] (x).models"


def test_missing_file_and_bad_toml_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="missing.toml: cannot read"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[performance\n")
    with pytest.raises(ConfigError, match="bad.toml: not valid TOML"):
        load_config(bad)


def test_user_module_starts_from_latency_defaults_and_timeout_is_capped() -> None:
    config = load(
        "[performance]\ntest_timeout_seconds = 10\n"
        "[performance.modules.big_prompt]\ninput_tokens = 4000\ntimeout_seconds = 99\n"
    )
    module = config.performance.modules["big_prompt"]
    assert module.input_tokens == 4000
    assert module.max_tokens == config.performance.modules["latency"].max_tokens
    assert module.timeout_seconds == 10


def test_test_models_providers_without_named_models_contribute_all_models() -> None:
    config = load(
        '[performance.test_models]\nproviders = ["groq", "anthropic"]\n'
        'models = ["groq:llama-3.1-8b-instant"]\n'
    )
    assert [t.name for t in config.performance.targets] == [
        "groq:llama-3.1-8b-instant",
        "anthropic:claude-3-5-haiku",
    ]


def test_secret_never_prints_its_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GROQ_API_KEY", "gsk-very-secret-value")
    config = load()
    groq = config.providers["groq"]
    assert groq.api_key.reveal() == "gsk-very-secret-value"
    for text in (repr(config), str(groq), repr(config.providers["anthropic"])):
        assert "gsk-very-secret-value" not in text
        assert "sk-ant-literal-secret" not in text
    monkeypatch.delenv("GROQ_API_KEY")
    with pytest.raises(KeyError, match="GROQ_API_KEY is not set"):
        groq.api_key.reveal()
    assert Secret("$X").env_var == "X"


def test_probe_api_key_is_kept_apart() -> None:
    config = load('[performance.providers.groq]\nprobe_api_key = "$GROQ_PROBE_KEY"\n')
    groq = config.providers["groq"]
    assert groq.key_for_probing.env_var == "GROQ_PROBE_KEY"
    assert groq.api_key.env_var == "GROQ_API_KEY"


def test_routes_and_chains_parse_like_the_proxy() -> None:
    assert parse_chain("groq,llama | ollama,qwen2.5-coder:latest") == [
        Route("groq", "llama"),
        Route("ollama", "qwen2.5-coder:latest"),
    ]
    assert Route.parse("openrouter:anthropic/claude-3.5-sonnet") == Route(
        "openrouter", "anthropic/claude-3.5-sonnet"
    )
    with pytest.raises(ValueError):
        Route.parse("no-model")


def test_durations() -> None:
    assert duration_seconds("1h30m") == 5400
    assert duration_seconds("15s") == 15
    with pytest.raises(ValueError):
        duration_seconds("")


def test_redact_removes_a_key_that_contains_another_whole() -> None:
    from perfgen.config import redact

    text = "keys sk-test-12345678 and sk-test-1234"
    cleaned = redact(text, lambda: ["sk-test-1234", "sk-test-12345678"])
    assert cleaned == "keys <redacted> and <redacted>"


def test_management_token_is_an_env_reference() -> None:
    assert load().performance.exporter.management_token is None
    config = load('[performance.exporter]\nmanagement_token = "$PERFGEN_MGMT_TOKEN"\n')
    token = config.performance.exporter.management_token
    assert isinstance(token, Secret) and token.env_var == "PERFGEN_MGMT_TOKEN"


@pytest.mark.parametrize(
    "value",
    [
        '"literal-token-in-the-file"',
        '""',
        '"$"',
        '"$1ABC"',
        '"$MY-TOKEN"',
        '"$A B"',
        "42",
        "true",
        '["$A"]',
    ],
)
def test_bad_management_token_names_the_key(value: str) -> None:
    error = error_of(f"[performance.exporter]\nmanagement_token = {value}\n")
    assert error.key == "performance.exporter.management_token"
    assert "literal-token-in-the-file" not in str(error)


def test_capability_overrides_per_provider_and_model_glob() -> None:
    config = load("""
[performance.providers.groq]
protocol = "openai-responses"
max_tokens_field = "max_completion_tokens"
stream_options = false
reasoning_effort = "high"

[performance.providers.groq.models."llama-3.1-*"]
max_tokens_field = "max_tokens"
lowest_effort = "none"

[performance.providers.anthropic]
thinking_budget_tokens = 2048

[performance.modules.latency]
reasoning_effort = "lowest"
temperature = 0.7
""")
    groq = config.providers["groq"]
    assert groq.protocol == "openai-responses"
    big = groq.capabilities("llama-3.3-70b-versatile")
    small = groq.capabilities("llama-3.1-8b-instant")
    assert (big.max_tokens_field, big.stream_options, big.reasoning_effort) == (
        "max_completion_tokens",
        False,
        "high",
    )
    assert (small.max_tokens_field, small.lowest_effort) == ("max_tokens", "none")
    assert config.providers["anthropic"].capabilities("claude-3-5-haiku").thinking_budget_tokens
    latency = config.module("latency")
    assert (latency.reasoning_effort, latency.temperature) == ("lowest", 0.7)
    # Defaults: no sampling parameter, and health asks reasoning models for little effort.
    defaults = load()
    assert defaults.module("latency").temperature is None
    assert defaults.module("health").reasoning_effort == "lowest"
    assert defaults.module("health").max_tokens >= 64


@pytest.mark.parametrize(
    ("performance", "key"),
    [
        (
            '[performance.providers.groq]\nmax_tokens_field = "max_length"\n',
            "performance.providers.groq.max_tokens_field",
        ),
        (
            '[performance.providers.groq]\nstream_options = "yes"\n',
            "performance.providers.groq.stream_options",
        ),
        (
            '[performance.providers.groq]\nreasoning_effort = "hgih"\n',
            "performance.providers.groq.reasoning_effort",
        ),
        (
            "[performance.providers.anthropic]\nthinking_budget_tokens = 100\n",
            "performance.providers.anthropic.thinking_budget_tokens",
        ),
        (
            '[performance.providers.groq.models."llama*"]\nmax_token_field = "max_tokens"\n',
            "performance.providers.groq.models.llama*.max_token_field",
        ),
        (
            '[performance.providers.groq]\nprotocol = "responses"\n',
            "performance.providers.groq.protocol",
        ),
        (
            '[performance.modules.health]\nreasoning_effort = "least"\n',
            "performance.modules.health.reasoning_effort",
        ),
    ],
)
def test_bad_capability_values_name_the_key(performance: str, key: str) -> None:
    assert error_of(performance).key == key


def test_score_references_default_to_the_thresholds() -> None:
    # Unset, the score is relative to the thresholds, as before the keys existed.
    default = parse_config(PROVIDERS, "proxy.toml").performance.score
    assert default == ScoreSettings()
    performance = parse_config(
        PROVIDERS
        + "[performance.score]\nlatency_reference_ms = 1000\n"
        + "throughput_reference_tokens_per_sec = 100\n",
        "proxy.toml",
    ).performance
    assert performance.score == ScoreSettings(1000.0, 100.0)
    only_latency = parse_config(
        PROVIDERS + "[performance.score]\nlatency_reference_ms = 800\n", "proxy.toml"
    ).performance.score
    assert only_latency.throughput_reference_tokens_per_sec is None
    assert only_latency.failure_ratio_reference is None
    failures = parse_config(
        PROVIDERS + "[performance.score]\nfailure_ratio_reference = 0.25\n", "proxy.toml"
    ).performance.score
    assert failures == ScoreSettings(failure_ratio_reference=0.25)
    assert failures.form == "ratio"
    capped = parse_config(
        PROVIDERS + '[performance.score]\nform = "capped"\nlatency_reference_ms = 2000\n',
        "proxy.toml",
    ).performance.score
    assert capped == ScoreSettings(latency_reference_ms=2000.0, form="capped")
    assert capped.latency_statistic == "p95"
    mean = parse_config(
        PROVIDERS + '[performance.score]\nlatency_statistic = "mean"\n', "proxy.toml"
    ).performance.score
    assert mean == ScoreSettings(latency_statistic="mean")
