"""stack/demo.py and `perfgen demo` without the long story: configs, helpers, failures."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from exporter.config import Route, load_config
from generator.proxy_schema import validate_text
from simulator.config import load_simulator_config
from stack import processes
from stack.demo import (
    DEMO_PROXY_CONFIG,
    DEMO_SIMULATOR_CONFIG,
    SIMULATOR_PLACEHOLDER,
    AlertFeed,
    DemoStack,
    describe_alert,
    point_at_simulator,
    read_chain,
    router_diff,
)
from stack.demo_cli import demo
from stack.processes import INSTALL_HINT
from stack.webhook import WebhookReceiver


def test_demo_configs_load_and_agree() -> None:
    simulator = load_simulator_config(DEMO_SIMULATOR_CONFIG)
    config = load_config(DEMO_PROXY_CONFIG)
    assert validate_text(DEMO_PROXY_CONFIG.read_text(encoding="utf-8")) == []
    simulated = {(p.name, m.name) for p in simulator.providers for m in p.models}
    configured = {(t.provider, t.model) for t in config.performance.targets}
    assert configured == simulated
    assert len(simulator.providers) >= 3 and len(simulated) >= 6
    profiles = {m.name: m.profile for p in simulator.providers for m in p.models}
    assert any(p.reasoning_tokens > 0 for p in profiles.values())
    assert any(p.error_rate > 0 for p in profiles.values())
    # Each provider's protocol is the one the proxy infers from its name.
    for provider in simulator.providers:
        assert config.providers[provider.name].protocol == provider.protocol
        assert config.providers[provider.name].api_key.reveal() == provider.api_key


def test_demo_default_primary_is_the_best_profile() -> None:
    """The story degrades the default primary; it must start as the clear favourite."""
    simulator = load_simulator_config(DEMO_SIMULATOR_CONFIG)
    profiles = {(p.name, m.name): m.profile for p in simulator.providers for m in p.models}
    chain = read_chain(DEMO_PROXY_CONFIG)
    first = chain[0]
    best = profiles[(first.provider, first.model)]
    assert len(chain) >= 3
    for route in chain[1:]:
            other = profiles[(route.provider, route.model)]
            assert best.ttft_ms < other.ttft_ms
            assert best.tokens_per_second >= other.tokens_per_second or other.error_rate > 0


def test_demo_probes_fit_the_scrape_timeout() -> None:
    """Every probe must finish inside the 5 s scrape (minus the exporter's offset)."""
    simulator = load_simulator_config(DEMO_SIMULATOR_CONFIG)
    config = load_config(DEMO_PROXY_CONFIG)
    for provider in simulator.providers:
        for model in provider.models:
            p = model.profile
            for module in config.performance.sd_modules:
                tokens = min(p.output_tokens, config.performance.modules[module].max_tokens)
                seconds = (p.ttft_ms / 1000 * (1 + p.ttft_sigma)
                           + (tokens + p.reasoning_tokens) / p.tokens_per_second)
                assert seconds < 4.0, (provider.name, model.name, module, seconds)


def test_point_at_simulator_moves_only_placeholder_urls() -> None:
    text = DEMO_PROXY_CONFIG.read_text(encoding="utf-8")
    moved = point_at_simulator(text, "http://127.0.0.1:12345/")
    assert SIMULATOR_PLACEHOLDER not in moved
    urls = [p["api_base_url"] for p in tomllib.loads(moved)["providers"]]
    assert urls == [
        "http://127.0.0.1:12345/fastcloud/v1",
        "http://127.0.0.1:12345/anthropic",
        "http://127.0.0.1:12345/budgetcloud/v1",
    ]
    # Comments and everything else survive (tomlkit round trip).
    assert moved.replace("127.0.0.1:12345", "127.0.0.1:8700") == text


def test_read_chain_and_router_diff(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[router]\ndefault = "a,x|b,y"\n')
    assert read_chain(path) == [Route("a", "x"), Route("b", "y")]
    assert read_chain(path, "think") == []
    diff = router_diff(path.read_text(), '[router]\ndefault = "b,y|a,x"\n', "config.toml")
    assert '-default = "a,x|b,y"' in diff and '+default = "b,y|a,x"' in diff


def test_describe_alert_and_feed() -> None:
    alert = {
        "status": "firing",
        "labels": {"alertname": "PerfgenLatencyHigh", "provider": "p", "model": "m",
                   "severity": "warning"},
        "annotations": {"summary": "slow"},
    }
    assert describe_alert(alert) == "FIRING PerfgenLatencyHigh p/m (warning): slow"
    receiver = WebhookReceiver()
    feed = AlertFeed(receiver)
    receiver._record({"alerts": [alert]})
    assert feed.new() == [alert]
    assert feed.new() == []
    receiver.stop()


def test_stop_before_start_is_harmless(tmp_path: Path) -> None:
    stack = DemoStack(tmp_path)
    stack.stop()
    stack.stop()


def test_demo_without_binaries_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(processes, "_EXTRA_DIRS", ())
    monkeypatch.delenv("PERFGEN_PROMETHEUS_BINARY", raising=False)
    result = CliRunner().invoke(demo, ["--workdir", str(tmp_path / "w"), "--quiet"])
    assert result.exit_code == 1
    assert INSTALL_HINT in result.output
    assert not (tmp_path / "w").exists()  # nothing was started
