"""Config hardening: values that pass type checks but break things later are refused at load."""

from __future__ import annotations

from pathlib import Path

import pytest

from perfgen.config import ConfigError, load_config, parse_config, redact, secret_values

PROVIDER = """
[[providers]]
name = "groq"
api_base_url = "{url}"
api_key = "{key}"
models = ["m"]
"""


def provider(url: str = "https://api.groq.com/openai/v1", key: str = "$GROQ_API_KEY") -> str:
    return PROVIDER.format(url=url, key=key)


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ("[performance]\ntest_interval_minutes = nan", "performance.test_interval_minutes"),
        ("[performance]\ntest_timeout_seconds = inf", "performance.test_timeout_seconds"),
        ("[performance.thresholds]\nmin_success_rate = nan", "performance.thresholds"),
        ("[performance.weights]\nlatency = nan\nthroughput = 0.6", "performance.weights.latency"),
        ("[performance.modules.latency]\ntemperature = -inf", "performance.modules.latency"),
        ("[performance.generator]\nhysteresis_margin = nan", "performance.generator"),
        (
            "[performance.exporter]\nbackoff_initial_seconds = inf",
            "performance.exporter.backoff_initial_seconds",
        ),
    ],
)
def test_nan_and_infinities_are_refused_with_file_and_key(table: str, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(provider() + table, "proxy.toml")
    assert str(caught.value).startswith(f"proxy.toml: {key}")
    assert "finite" in str(caught.value)


def test_a_non_utf8_file_is_refused_with_its_name(tmp_path: Path) -> None:
    path = tmp_path / "proxy.toml"
    path.write_bytes(provider().encode() + b"\n# caf\xe9 latin-1 comment\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: not UTF-8")
    assert "0xe9" in str(caught.value)


@pytest.mark.parametrize(
    "url",
    ["http://[::1/v1", "http://host:99999/v1", "http://host:port/v1", "http:///v1", "http://:80"],
)
def test_unparsable_urls_are_refused_with_file_and_key(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(provider(url=url), "proxy.toml")
    assert str(caught.value).startswith("proxy.toml: providers[0] (groq).api_base_url: ")
    with pytest.raises(ConfigError) as caught:
        parse_config(
            provider() + f'[performance.providers.groq]\napi_base_url = "{url}"\n', "proxy.toml"
        )
    assert str(caught.value).startswith("proxy.toml: performance.providers.groq.api_base_url: ")


def test_ipv6_and_ports_still_parse() -> None:
    config = parse_config(provider(url="http://[::1]:11434/v1"), "proxy.toml")
    assert config.providers["groq"].api_base_url == "http://[::1]:11434/v1"


@pytest.mark.parametrize("key", ["ollama", "OLLAMA", "sk-12", "dummy"])
def test_stand_in_keys_warn_and_are_not_redacted_everywhere(key: str) -> None:
    config = parse_config(provider(key=key), "proxy.toml")
    assert len(config.warnings) == 1
    assert config.warnings[0].startswith("proxy.toml: providers[0] (groq).api_key: literal key")
    assert key not in config.warnings[0]  # the warning says what is wrong, not the value
    # The word stays in text: "ollama" is also the provider's name in every log line.
    text = f"provider {key} answered"
    assert redact(text, lambda: secret_values(config)) == text


def test_real_literal_keys_are_redacted_whole_and_do_not_warn() -> None:
    config = parse_config(provider(key="sk-live-0123456789abcdef"), "proxy.toml")
    assert config.warnings == ()
    assert redact("echo sk-live-0123456789abcdef!", lambda: secret_values(config)) == (
        "echo <redacted>!"
    )


def test_the_probe_command_prints_the_warning(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from perfgen.exporter.cli import probe

    path = tmp_path / "proxy.toml"
    path.write_text(provider(url="http://127.0.0.1:9/v1", key="ollama"))
    result = CliRunner().invoke(
        probe, ["--config", str(path), "--target", "groq:nope", "--module", "latency"]
    )
    assert result.exit_code == 2  # unknown target: the warning came before that
    expected = f"warning: {path}: providers[0] (groq).api_key: literal key is a well-known stand-in"
    assert expected in result.stderr


def test_the_exporter_logs_the_warning_at_start_and_on_reload(tmp_path: Path) -> None:
    import io
    import json

    from perfgen.exporter.service import ExporterService

    path = tmp_path / "proxy.toml"
    path.write_text(provider(url="http://127.0.0.1:9/v1", key="$PERFGEN_UNSET_KEY"))
    stream = io.StringIO()
    service = ExporterService(str(path), log_format="json", log_stream=stream)
    service.log_config_warnings()
    assert stream.getvalue() == ""  # an environment reference is not a weak key
    path.write_text(provider(url="http://127.0.0.1:9/v1", key="ollama"))
    assert service.reload() is None
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    warnings = [r for r in records if r["msg"] == "config warning"]
    assert len(warnings) == 1 and "well-known stand-in word" in warnings[0]["warning"]
